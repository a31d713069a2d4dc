import { readFileSync } from "node:fs";
import pg from "pg";

/** CPU time (user + system) a process (all threads) or one of its threads has used, in ms; 0 once it is gone. */
export function cpuMsOf(pid: number, thread?: number): number {
  try {
    const stat = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start at ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

/** The Postgres backends serving the given login roles (the services' pools). */
export async function backendPids(adminUrl: string, roles: readonly string[]): Promise<number[]> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const r = await admin.query<{ pid: number }>("select pid from pg_stat_activity where usename = any($1)", [roles]);
    return r.rows.map((x) => x.pid);
  } finally {
    await admin.end();
  }
}

/** CPU used by named processes over a measured stretch, in ms. */
export class CpuMeter {
  readonly #start = new Map<number, number>();

  constructor(pids: Iterable<number>) {
    for (const p of pids) this.#start.set(p, cpuMsOf(p));
  }

  /** CPU ms since construction, summed over `pids` (a pid not seen at the start counts from zero). */
  since(pids: Iterable<number>): number {
    let total = 0;
    for (const p of pids) total += cpuMsOf(p) - (this.#start.get(p) ?? 0);
    return total;
  }
}
