/** A seeded message network for simulations: delay, reordering, duplication, loss, partitions. */
import type { Random } from "../../src/platform/types.ts";

export interface FaultOptions {
  /** Probability (0..1) that a sent message is dropped. */
  readonly lossProbability: number;
  /** Probability (0..1) that a sent message is delivered twice. */
  readonly duplicateProbability: number;
}

export const noFaults: FaultOptions = { lossProbability: 0, duplicateProbability: 0 };

interface InFlight<Message> {
  readonly from: string;
  readonly to: string;
  readonly message: Message;
}

/** Bound on messages in flight, so a runaway simulation fails loudly instead of eating memory. */
export const inFlightMessagesMax = 100_000;

/**
 * Messages between named nodes. Nothing is delivered until the test asks; `deliverOne` picks a
 * random in-flight message, so any delivery order can happen. A partition drops messages that
 * would cross it at delivery time, as a cut link would.
 */
export class SimulatedMessageNetwork<Message> {
  private inFlight: InFlight<Message>[] = [];
  private readonly cut = new Set<string>();
  private readonly receivers = new Map<string, (from: string, message: Message) => void>();
  delivered = 0;
  dropped = 0;

  constructor(private readonly random: Random, public faults: FaultOptions = noFaults) {}

  register(node: string, receive: (from: string, message: Message) => void): void {
    this.receivers.set(node, receive);
  }

  send(from: string, to: string, message: Message): void {
    if (this.chance(this.faults.lossProbability)) {
      this.dropped++;
      return;
    }
    const copies = this.chance(this.faults.duplicateProbability) ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) this.inFlight.push({ from, to, message });
    if (this.inFlight.length > inFlightMessagesMax) {
      throw new Error(`more than ${inFlightMessagesMax} messages in flight`);
    }
  }

  get pending(): number {
    return this.inFlight.length;
  }

  /** Cuts the link between `left` and `right` in both directions. */
  partition(left: string, right: string): void {
    this.cut.add(linkName(left, right));
  }

  /** Isolates `groupA` from everyone else. */
  isolate(group: readonly string[], everyone: readonly string[]): void {
    for (const inside of group) {
      for (const outside of everyone) if (!group.includes(outside)) this.partition(inside, outside);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Delivers one random in-flight message; false when none is left. */
  deliverOne(): boolean {
    if (this.inFlight.length === 0) return false;
    const index = this.random.nextUint32() % this.inFlight.length;
    const [item] = this.inFlight.splice(index, 1);
    if (this.cut.has(linkName(item!.from, item!.to))) {
      this.dropped++;
      return true;
    }
    this.delivered++;
    this.receivers.get(item!.to)?.(item!.from, item!.message);
    return true;
  }

  /** Delivers until nothing is in flight (answers sent meanwhile are delivered too). */
  deliverAll(stepsMax = 1_000_000): void {
    for (let step = 0; step < stepsMax; step++) if (!this.deliverOne()) return;
    throw new Error(`network did not quiesce within ${stepsMax} deliveries`);
  }

  private chance(probability: number): boolean {
    return probability > 0 && this.random.nextUint32() / 2 ** 32 < probability;
  }
}

function linkName(left: string, right: string): string {
  return left < right ? `${left}|${right}` : `${right}|${left}`;
}
