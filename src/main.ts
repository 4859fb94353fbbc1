/** The binary's entry point: the only place that reads argv and sets the process exit code. */
import "./platform/cbor-environment.ts";
import { dispatch } from "./cli/dispatch.ts";

const exitCode = await dispatch(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(`${text}\n`),
  stderr: (text) => process.stderr.write(`${text}\n`),
});
process.exitCode = exitCode;
