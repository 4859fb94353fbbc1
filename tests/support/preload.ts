/** Test preload: the same environment the binary sets before any module loads cbor-x. */
import "../../src/platform/cbor-environment.ts";
