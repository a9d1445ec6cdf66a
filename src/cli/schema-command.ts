import type pg from 'pg';
import { withPool, withSession } from '../db/database.js';
import type { Logger } from '../log.js';
import { removeStage } from '../core/checkpoint.js';
import { takeWriteLock } from '../core/runs.js';
import { listStages, type StageTable } from '../stage/stage.js';
import { applySchema } from '../db/schema.js';
import { describeTarget, readTarget } from '../db/target.js';
import { EXIT } from '../errors.js';
import { Problems } from './config.js';
import { setup, type CliContext, type ConnectionFlags } from './context.js';

export async function runSchemaApply(flags: ConnectionFlags, ctx: CliContext): Promise<number> {
  const problems = new Problems();
  const { conn, log } = setup(flags, ctx, problems);
  problems.throwIfAny();
  return withPool({ url: conn.databaseUrl, ssl: conn.databaseSsl, max: 1, log }, async (pool) => {
    const applied = await applySchema(pool);
    const files = applied.files.map((f) => `sql/${f}`).join(', ');
    if (!applied.usersExisted) {
      const { access } = await readTarget(pool);
      const rls = access.rls
        ? `\nRow level security is enabled on the new public.users, with no policy: ${access.grantees.join(', ')} ` +
          "were granted it by the database's default privileges (on Supabase, the public API roles), and see no row until the app team " +
          `adds policies of its own. The tool's roles must bypass it (the owner ${access.owner}, or a role with BYPASSRLS: docs/target-table.md "Database roles").\n`
        : '';
      ctx.out(`Schema applied (${files}); running it again changes nothing.\n${rls}`);
      return EXIT.ok;
    }
    const target = await readTarget(pool);
    ctx.out(
      `Schema applied (${files}). public.users already exists and was left exactly as it is (the tool never alters it); ` +
        `running it again changes nothing.\n\n${describeTarget(target)}`,
    );
    return target.problems.length === 0 ? EXIT.ok : EXIT.usage;
  });
}

/** `schema check`: public.users as the catalog describes it, beside what the tool writes. Exit 2 if it cannot. */
export async function runSchemaCheck(flags: ConnectionFlags, ctx: CliContext): Promise<number> {
  const problems = new Problems();
  const { conn, log } = setup(flags, ctx, problems);
  problems.throwIfAny();
  return withPool({ url: conn.databaseUrl, ssl: conn.databaseSsl, max: 1, log }, async (pool) => {
    const target = await readTarget(pool, { ledger: false });
    const stages = await stagesIn(pool, log);
    ctx.out(describeTarget(target) + describeStages(stages));
    return target.problems.length === 0 ? EXIT.ok : EXIT.usage;
  });
}

/**
 * `schema clean`: under the write lock (no writing run is alive), drops every stage in migrate_users the role
 * may drop. An interrupted run's stage goes with the rest: its next run reads Redis afresh (what it wrote stays).
 */
export async function runSchemaClean(flags: ConnectionFlags, ctx: CliContext): Promise<number> {
  const problems = new Problems();
  const { conn, log } = setup(flags, ctx, problems);
  problems.throwIfAny();
  return withPool({ url: conn.databaseUrl, ssl: conn.databaseSsl, max: 2, log }, async (pool) => {
    await readTarget(pool);
    const lock = await takeWriteLock(pool, log);
    try {
      const left = await withSession(
        pool,
        async (session) => {
          const kept: StageTable[] = [];
          for (const stage of await listStages(session.db)) {
            if (!stage.mayDrop) {
              kept.push(stage);
              continue;
            }
            await removeStage(session.db, stage.table);
            ctx.out(`removed ${stage.table}${stage.holdsRecords ? ` (${runOf(stage)}, with its records)` : ' (empty)'}\n`);
          }
          return kept;
        },
        log,
      );
      for (const stage of left) {
        ctx.out(
          `left ${stage.table}${stage.holdsRecords ? ` (${runOf(stage)}, with its records)` : ' (empty)'}: owned by ${stage.owner}, run this as ${stage.owner}\n`,
        );
      }
      if (left.length === 0) ctx.out('No stage is left in migrate_users.\n');
      return left.some((s) => s.holdsRecords) ? EXIT.differences : EXIT.ok;
    } finally {
      await lock.release();
    }
  });
}

/** The stages of migrate_users, when the bookkeeping schema is there (schema check may come before apply). */
async function stagesIn(pool: pg.Pool, log: Logger): Promise<StageTable[]> {
  // A reader role made before runs was readable (see whitelistInfo) still gets its table described.
  const { rows } = await pool.query<{ readable: boolean | null }>(`select has_table_privilege(to_regclass('migrate_users.runs'), 'select') as readable`);
  if (rows[0]?.readable !== true) return [];
  return withSession(pool, (session) => listStages(session.db), log);
}

function runOf(stage: StageTable): string {
  const run = stage.run;
  return run ? `run ${run.id}, ${run.status}, started ${run.startedAt.toISOString()}` : 'no run recorded';
}

/** The stages `schema check` lists: records of unfinished runs (password hashes with them) are never out of sight. */
function describeStages(stages: readonly StageTable[]): string {
  const held = stages.filter((s) => s.holdsRecords);
  if (held.length === 0) return '';
  return [
    '  stages holding records (each with its password hash) of runs that did not finish:',
    ...held.map((s) => `    ${s.table}: ${runOf(s)}, owned by ${s.owner}`),
    '    the next writing run of a role that may drop them removes them, or resumes its own; `migrate-users schema clean` removes them now',
    '',
  ].join('\n');
}
