// Seeds 1001..1300 (SIM_SEEDS of them) of the simulation (see simulation.test.ts), in a second file to use both cores.
process.env.SIM_FIRST_SEED ??= "1001";
await import("./simulation.test.js");
