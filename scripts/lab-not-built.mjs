// Placeholder for `npm run lab` until the TUN runtime and the netns lab land (issue 3).
// It says so plainly instead of pretending, and shows what already works.
console.log(`tunvs lab: not built yet.

The one-command netns lab (TUN device, worker threads, LB pair, real servers, autocannon
through the VIP) arrives with the "Run it for real" issue. What works today is the packet
engine, tested without root:

  npm test               lint + typecheck + the engine test suite
  npm run bench:micro    in-process engine benchmark (Mpps per worker, new sessions/s)
`);
process.exitCode = 0;
