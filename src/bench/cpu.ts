import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';
import { Redis } from 'ioredis';

/**
 * CPU seconds (user + system) a command cost each process kind, which a shared machine moves far less than
 * wall time:
 * - node: the command's own process, read from this process's `cutime + cstime` in /proc (the CPU of children
 *   it has waited for): exact once the child has exited, whatever threads it ran;
 * - postgres: every process of the server, the postmaster's children that exited meanwhile (its `cutime +
 *   cstime`: the run's backends) and those still alive (checkpointer, WAL writer, autovacuum, idle backends);
 * - redis: the server's own `used_cpu_user + used_cpu_sys` (INFO cpu).
 * Linux only; each figure is the difference of two snapshots, so another workload on the same server counts too.
 */
export interface Cpu {
  readonly node: number;
  readonly postgres: number;
  readonly redis: number;
}

const TICKS = 100; // USER_HZ: /proc reports CPU time in clock ticks, 100 a second on Linux

export interface CpuMeter {
  snapshot(): Promise<Cpu>;
  close(): void;
}

export async function cpuMeter(pool: pg.Pool, redisUrl: string): Promise<CpuMeter> {
  const { rows } = await pool.query<{ pid: number }>('select pg_backend_pid() as pid');
  const backend = rows[0]?.pid;
  if (backend === undefined) throw new Error('no backend pid');
  const postmaster = stat(backend).ppid;
  const redis = new Redis(redisUrl);
  return {
    snapshot: async () => {
      const info = await redis.info('cpu');
      const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
      const self = stat('self');
      return { node: self.childTicks / TICKS, postgres: serverTicks(postmaster) / TICKS, redis: field('used_cpu_user') + field('used_cpu_sys') };
    },
    close: () => redis.disconnect(),
  };
}

/** What `after` cost more than `before`, per process kind. */
export function cpuSince(before: Cpu, after: Cpu): Cpu {
  return { node: after.node - before.node, postgres: after.postgres - before.postgres, redis: after.redis - before.redis };
}

/** The postmaster's own ticks, its exited children's, and those of every live child. */
function serverTicks(postmaster: number): number {
  const main = stat(postmaster);
  let total = main.ownTicks + main.childTicks;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const child = stat(Number(entry));
      if (child.ppid === postmaster) total += child.ownTicks;
    } catch {
      // exited while listed
    }
  }
  return total;
}

function stat(pid: number | 'self'): { ppid: number; ownTicks: number; childTicks: number } {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: fields are counted from its closing one.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // Fields 4, 14-17 of proc(5) (1-based, the state is field 3): ppid, utime, stime, cutime, cstime.
  const n = (i: number) => Number(fields[i - 3] ?? 0);
  return { ppid: n(4), ownTicks: n(14) + n(15), childTicks: n(16) + n(17) };
}
