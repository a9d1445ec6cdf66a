import { withPool } from '../db/database.js';
import { applySchema } from '../db/schema.js';
import { EXIT } from '../errors.js';
import { Problems } from './config.js';
import { setup, type CliContext, type ConnectionFlags } from './context.js';

export async function runSchemaApply(flags: ConnectionFlags, ctx: CliContext): Promise<number> {
  const problems = new Problems();
  const { conn, log } = setup(flags, ctx, problems);
  problems.throwIfAny();
  const applied = await withPool({ url: conn.databaseUrl, ssl: conn.databaseSsl, max: 1, log }, (pool) => applySchema(pool));
  const files = applied.files.map((f) => `sql/${f}`).join(', ');
  ctx.out(
    applied.usersExisted
      ? `Schema applied (${files}). public.users already exists and was left exactly as it is (the tool never alters it); running it again changes nothing.\n`
      : `Schema applied (${files}); running it again changes nothing.\n`,
  );
  return EXIT.ok;
}
