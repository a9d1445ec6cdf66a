import { once } from 'node:events';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { mapRecord, type MapContext } from '../map/map-record.js';
import { USER_COLUMNS, type UserRow } from '../map/user-row.js';
import { scanKeys, ValueReader } from '../source/redis-reader.js';
import type { Redis } from 'ioredis';

/** A row as one COPY text line (tab-separated, `\N` for null, backslash escapes). */
export function copyRowLine(row: UserRow): string {
  return `${USER_COLUMNS.map((c) => {
    const v = row[c];
    if (v === null) return '\\N';
    if (typeof v === 'boolean') return v ? 't' : 'f';
    return v.replace(/[\\\n\r\t]/g, (ch) => ({ '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' })[ch] ?? ch);
  }).join('\t')}\n`;
}

/**
 * What a careful one-off script would do, and nothing more: SCAN, read the values (a batch per command, four
 * batches in flight), JSON.parse and map each with the tool's mapping, COPY the rows straight into an empty
 * copy of `table` (its keys, indexes and, given, its trigger). No stage, no ledger, no check against what
 * PostgreSQL holds, no report; the emails seen are kept in memory to skip the deliberate duplicate. Seconds.
 */
export async function barePipeline(
  pool: pg.Pool,
  redis: Redis,
  options: { readonly match: string; readonly table: string; readonly trigger?: string; readonly ctx: MapContext },
): Promise<number> {
  const client = await pool.connect();
  const target = `${options.table}_bare`;
  try {
    await client.query(`drop table if exists ${target}`);
    await client.query(`create table ${target} (like ${options.table} including all)`);
    if (options.trigger)
      await client.query(`create trigger bare_pipeline_touch before insert or update on ${target} for each row execute function ${options.trigger}()`);
    const started = process.hrtime.bigint();
    const copy = client.query(copyFrom(`copy ${target} (${USER_COLUMNS.join(', ')}) from stdin`));
    const finished = once(copy, 'finish');
    const reader = new ValueReader(redis);
    const prefix = options.match.length - 1;
    const emails = new Set<string>();
    const inflight = new Set<Promise<void>>();
    for await (const keys of scanKeys(redis, { match: options.match, scanCount: 1000, batchSize: 1000 })) {
      const p = reader.read(keys, prefix, 1_048_576).then(async (records) => {
        let chunk = '';
        for (const r of records) {
          if (!r.ok) continue;
          const mapped = mapRecord(r.keyEmail, r.value, options.ctx);
          if (!mapped.ok || emails.has(mapped.row.email)) continue;
          emails.add(mapped.row.email);
          chunk += copyRowLine(mapped.row);
        }
        if (!copy.write(chunk)) await once(copy, 'drain');
      });
      inflight.add(p);
      p.finally(() => inflight.delete(p)).catch(() => undefined);
      if (inflight.size >= 4) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    copy.end();
    await finished;
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    const { rows } = await client.query<{ n: string }>(`select count(*)::text as n from ${target}`);
    await client.query(`drop table ${target}`);
    if (Number(rows[0]?.n ?? 0) === 0) throw new Error('the bare pipeline wrote nothing');
    return elapsed;
  } finally {
    client.release();
  }
}
