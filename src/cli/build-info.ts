/** The version and commit the binary was built from, injected by scripts/build.ts. */
import packageJson from "../../package.json" with { type: "json" };

declare const MARS_COMMIT: string | undefined;

export const marsVersion: string = packageJson.version;
export const marsCommit: string = typeof MARS_COMMIT === "string" ? MARS_COMMIT : "unbuilt";
