/** `mars log dump|verify`: read logfiles offline with the engine's own reader and chain check. */
import { defineCommand } from "citty";
import { MarsError } from "../../lib/errors.ts";
import { systemFiles } from "../../platform/files.ts";
import { openIoEngine, type IoEngineRequest } from "../../platform/io/index.ts";
import type { Storage } from "../../platform/types.ts";
import { digestText } from "../../log/position.ts";
import { scanLogfile, type ScannedRecord } from "../../log/reader.ts";
import { verifyLogDirectory, verifyLogfile, type VerifiedLogfile } from "../../log/verify.ts";
import { globalOptions } from "../global-args.ts";

async function withStorage<T>(
  request: IoEngineRequest | undefined, action: (storage: Storage) => Promise<T>,
): Promise<T> {
  const { engine } = openIoEngine(request);
  try {
    return await action({ files: systemFiles, io: engine });
  } finally {
    await engine.close();
  }
}

function recordRow(record: ScannedRecord) {
  const { header } = record;
  return {
    sequence: header.sequence, kind: header.kind, deviceOffset: header.deviceOffset,
    lengthBytes: header.lengthBytes, storedBytes: header.storedBytes, codec: header.codec,
    stamp: header.stamp, fileOffset: header.fileOffset, checksum: "ok",
  };
}

const columns = ["sequence", "kind", "deviceOffset", "lengthBytes", "storedBytes", "codec",
  "stamp", "fileOffset", "checksum"] as const;
const widths = [10, 12, 14, 10, 10, 5, 17, 12, 8];

function tableLine(values: readonly (string | number)[]): string {
  return values.map((value, index) => String(value).padStart(widths[index]!)).join(" ");
}

const dump = defineCommand({
  meta: { name: "dump", description: "Print a logfile's header and records as a table" },
  args: {
    file: { type: "positional", required: true, valueHint: "FILE", description: "A logfile" },
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const path = String(args.file);
    const say = (line: string) => process.stdout.write(`${line}\n`);
    await withStorage(options.ioEngine, async (storage) => {
      const rows: ReturnType<typeof recordRow>[] = [];
      let headerPrinted = false;
      const printHeader = () => {
        if (headerPrinted || options.json) return;
        headerPrinted = true;
        say(tableLine(columns));
      };
      const scan = await scanLogfile(storage, path, {
        onRecord(record) {
          const row = recordRow(record);
          if (options.json) rows.push(row);
          else {
            printHeader();
            say(tableLine(columns.map((column) => row[column])));
          }
        },
      });
      const { header } = scan;
      const summary = {
        file: path, formatVersion: header.formatVersion, resource: header.resource,
        origin: header.origin, sequence: header.sequence,
        firstRecordSequence: header.firstRecordSequence, createdMs: header.createdMs,
        previousDigest: digestText(header.previousDigest), records: scan.recordCount,
        endOffset: scan.endOffset, fileSizeBytes: scan.fileSizeBytes,
        ...(scan.tornTail ? { tornTail: scan.tornTail } : {}),
      };
      if (options.json) {
        say(JSON.stringify({ ...summary, records: rows }));
        return;
      }
      say(`${path}: logfile ${header.sequence} of ${header.resource} from ${header.origin}, ` +
        `format ${header.formatVersion}, ${scan.recordCount} records, ${scan.endOffset} bytes`);
      if (scan.tornTail) {
        say(`torn tail at offset ${scan.tornTail.offset}: ${scan.tornTail.reason}`);
      }
    });
  },
});

function describeVerified(logfile: VerifiedLogfile): string {
  const { scan } = logfile;
  return `${logfile.path}: ok, ${scan.recordCount} records ` +
    `(${scan.header.firstRecordSequence}..${scan.lastRecordSequence}), ${scan.endOffset} bytes, ` +
    `chain ${digestText(logfile.chainDigest).slice(0, 16)}`;
}

const verify = defineCommand({
  meta: {
    name: "verify",
    description: "Check every record and the version chain of logfiles or log directories",
  },
  args: {
    path: {
      type: "positional", required: true, valueHint: "PATH...", variadic: true,
      description: "Logfiles or a resource's log directory",
    },
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const paths = (args._ as string[]).length > 0 ? (args._ as string[]) : [String(args.path)];
    const report: unknown[] = [];
    await withStorage(options.ioEngine, async (storage) => {
      for (const path of paths) {
        const status = await storage.files.status(path);
        if (!status) throw new MarsError("not-found", `${path}: no such file or directory`);
        const verified = status.isDirectory
          ? (await verifyLogDirectory(storage, path)).logfiles
          : [await verifyLogfile(storage, path)];
        for (const logfile of verified) {
          if (options.json) {
            report.push({ file: logfile.path, records: logfile.scan.recordCount,
              endOffset: logfile.scan.endOffset, chain: digestText(logfile.chainDigest) });
          } else process.stdout.write(`${describeVerified(logfile)}\n`);
        }
      }
    });
    if (options.json) process.stdout.write(`${JSON.stringify({ ok: true, logfiles: report })}\n`);
  },
});

export default defineCommand({
  meta: { name: "log", description: "Inspect logfiles: dump records, verify records and chain" },
  subCommands: { dump, verify },
});
