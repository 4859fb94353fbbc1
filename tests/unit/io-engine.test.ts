/** The io engines against one conformance suite, and the choice between them (with fallback). */
import { describe, expect, test } from "bun:test";
import { openIoEngine } from "../../src/platform/io/index.ts";
import { createPortableEngine } from "../../src/platform/io/portable.ts";
import { UringEngine, uringDefaults } from "../../src/platform/io/uring.ts";
import { runIoEngineSuite } from "../support/io-conformance.ts";

/** Where the kernel or sandbox refuses io_uring, the uring tests skip and say why. */
const probe = UringEngine.open();
const uringMissing = probe instanceof UringEngine ? undefined : `io_uring: ${probe.message}`;
if (probe instanceof UringEngine) await probe.close();

function openUring(options = uringDefaults): UringEngine {
  const engine = UringEngine.open(options);
  if (!(engine instanceof UringEngine)) throw new Error(`io_uring: ${engine.message}`);
  return engine;
}

/**
 * A ring far smaller than the in-flight limit: exercises a full SQ, CQ overflow and waits for
 * bounce buffers; and the cooperative task-run setup flags.
 */
const tinyRing = {
  queueEntries: 4, completionEntries: 4, inFlightMax: 16,
  smallBounceSlotsMax: 3, largeBounceSlotsMax: 1, cooperative: true,
};

const unavailable = () => ({ name: "ENOSYS", message: "Function not implemented" });

runIoEngineSuite("uring", () => openUring(), 25, uringMissing);
runIoEngineSuite("uring, tiny cooperative ring", () => openUring(tinyRing), 15, uringMissing);
runIoEngineSuite("uring, with EAGAIN, EINTR and short transfers injected", () => {
  let state = 0x2545f491;
  const nextFraction = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  return openUring({
    ...uringDefaults,
    injectFault: (result) => {
      const draw = nextFraction();
      if (draw < 0.1) return -11;
      if (draw < 0.2) return -4;
      // Short counts stay whole pages, as the kernel's are on O_DIRECT files.
      if (draw < 0.4 && result >= 8192) return Math.floor(result / 8192) * 4096;
      return result;
    },
  });
}, 15, uringMissing);
runIoEngineSuite("portable", () => createPortableEngine());
runIoEngineSuite("automatic choice without io_uring", () => {
  const choice = openIoEngine(undefined, unavailable);
  expect(choice.engine.name).toBe("portable");
  return choice.engine;
}, 10);

describe("io engine choice", () => {
  const whereUring = test.skipIf(uringMissing !== undefined);
  whereUring("automatic: io_uring when the kernel allows it, saying so", async () => {
    const choice = openIoEngine();
    expect(choice.engine.name).toBe("uring");
    expect(choice.reason).toBe("io_uring is available");
    await choice.engine.close();
  });

  test("automatic without io_uring falls back to portable and says why", async () => {
    const choice = openIoEngine(undefined, unavailable);
    expect(choice.engine.name).toBe("portable");
    expect(choice.reason).toContain("fell back: io_uring unavailable (ENOSYS");
    await choice.engine.close();
  });

  test("an explicit portable request is honoured and named", async () => {
    const choice = openIoEngine({ name: "portable", source: "MARS_IO_ENGINE" });
    expect(choice.engine.name).toBe("portable");
    expect(choice.reason).toBe("requested by MARS_IO_ENGINE");
    await choice.engine.close();
  });

  test("an explicit uring request the kernel refuses is an engine error, not a fallback", () => {
    const request = { name: "uring", source: "--io-engine" } as const;
    expect(() => openIoEngine(request, unavailable)).toThrow("--io-engine uring: io_uring");
  });
});

describe.skipIf(uringMissing !== undefined)("io_uring ring", () => {
  test("completions beyond a full CQ come back through the kernel's overflow list", async () => {
    const { Ring } = await import("../../src/platform/io/uring-ring.ts");
    const ring = Ring.open({ submissionEntries: 4, completionEntries: 4 });
    if (!(ring instanceof Ring)) throw new Error(`io_uring: ${ring.message}`);
    try {
      const nop = 0;
      for (let round = 0; round < 3; round++) {
        for (let index = 0; index < 4; index++) {
          ring.push(nop, 0, -1, 0, 0, 0, 0, round * 4 + index);
        }
        expect(ring.submit()).toBe(4);
      }
      const seen: number[] = [];
      expect(ring.reap((userData, result) => {
        expect(result).toBe(0);
        seen.push(userData);
      })).toBe(12);
      expect(seen.sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
    } finally {
      ring.close();
    }
  });
});
