/** Pins cbor-x to its pure-JS path before it loads: its native addon aborted Bun in tests. */
process.env.CBOR_NATIVE_ACCELERATION_DISABLED = "true";
