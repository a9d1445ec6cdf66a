import { withPool } from '../db/database.js';
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
          `adds policies of its own. The tool's roles must bypass it (the owner ${access.owner}, or a role with BYPASSRLS: README "Database roles").\n`
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
  const target = await withPool({ url: conn.databaseUrl, ssl: conn.databaseSsl, max: 1, log }, (pool) => readTarget(pool, { ledger: false }));
  ctx.out(describeTarget(target));
  return target.problems.length === 0 ? EXIT.ok : EXIT.usage;
}
