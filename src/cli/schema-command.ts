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
  ctx.out(`Schema applied (${applied.map((f) => `sql/${f}`).join(', ')}); running it again changes nothing.\n`);
  return EXIT.ok;
}
