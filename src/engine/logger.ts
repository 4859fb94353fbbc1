/** Structured log lines for the engine: one event per line, as text for people or as JSON. */

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

export interface Logger {
  log(level: LogLevel, event: string, fields?: LogFields): void;
}

export type LogFormat = "text" | "json";

/** Renders one event; `wallMs` is the time people read (not used for ordering). */
export function formatLogLine(
  format: LogFormat, wallMs: number, level: LogLevel, event: string, fields: LogFields = {},
): string {
  const time = new Date(wallMs).toISOString();
  if (format === "json") {
    return JSON.stringify({ time, level, event, ...fields });
  }
  const rendered = Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${quoteIfNeeded(String(value))}`);
  return [time, level.toUpperCase().padEnd(5), event, ...rendered].join(" ");
}

function quoteIfNeeded(value: string): string {
  return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
}

/** A logger writing formatted lines to `sink` (stderr in the real engine, an array in tests). */
export function lineLogger(
  format: LogFormat, wallMs: () => number, sink: (line: string) => void, verbose = false,
): Logger {
  return {
    log(level, event, fields) {
      if (level === "debug" && !verbose) return;
      sink(formatLogLine(format, wallMs(), level, event, fields));
    },
  };
}
