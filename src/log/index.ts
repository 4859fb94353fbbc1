/** The log's public surface: what the engine, the commands and replication import. */
export {
  decodeLogfileHeader, decodePayload, decodeRecordHeader, encodeLogfileHeader, encodeRecord,
  logfileHeaderBytes, logFormatVersion, recordHeaderBytes, recordPayloadBytesMax,
  recordRangeBytesMax, type Codec, type LogfileHeader, type RecordHeader, type RecordInput,
  type RecordKind,
} from "./format.ts";
export {
  chainDigest, chainStartDigest, comparePositions, digestText, logfileName, parseLogfileName,
  positionText, sameDigest, type ChainLink, type LogPosition,
} from "./position.ts";
export {
  defectiveLog, scanLogfile, type ScannedRecord, type ScanOptions, type ScanResult, type TornTail,
} from "./reader.ts";
export {
  chainDigestOf, listLogfiles, verifyLogDirectory, verifyLogfile, type VerifiedLogfile,
} from "./verify.ts";
export {
  defaultLogWriterLimits, LogWriter, type AppendedRecord, type LogStart, type LogWriterLimits,
  type LogWriterOptions,
} from "./writer.ts";
export { applyRecord, ParallelApplier } from "./apply.ts";
