import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

const SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));

export interface SchemaFile {
  readonly name: string;
  readonly text: string;
}

/** The DDL files shipped in sql/ (schema files start with a number; role scripts and the like do not). */
export async function schemaFiles(): Promise<SchemaFile[]> {
  const names = (await readdir(SQL_DIR)).filter((n) => /^\d+_.*\.sql$/.test(n)).sort();
  return Promise.all(names.map(async (name) => ({ name, text: await readFile(`${SQL_DIR}${name}`, 'utf8') })));
}

/** The file that creates the users table: never run against a database that has one (the app's). */
const USERS_FILE = '001_users.sql';

export interface Applied {
  readonly files: string[];
  /** public.users existed (the app's table): left exactly as it was. */
  readonly usersExisted: boolean;
}

/**
 * Runs the schema files in one transaction; they are idempotent, so applying twice is a no-op. An existing
 * `public.users` belongs to the app: its file is skipped, so no trigger, function, column or constraint is
 * ever added to it. The tool owns only the `migrate_users` schema.
 */
export async function applySchema(pool: pg.Pool): Promise<Applied> {
  const all = await schemaFiles();
  const client = await pool.connect();
  try {
    await client.query('begin');
    // Two operators applying at once would race on CREATE ... IF NOT EXISTS.
    await client.query(`select pg_advisory_xact_lock(hashtext('migrate-users:schema'))`);
    const { rows } = await client.query<{ users: string | null }>(`select to_regclass('public.users')::text as users`);
    const usersExisted = Boolean(rows[0]?.users);
    const files = all.filter((f) => !(usersExisted && f.name === USERS_FILE));
    for (const file of files) {
      try {
        await client.query(file.text);
      } catch (cause) {
        throw new Error(`applying sql/${file.name}`, { cause });
      }
    }
    await client.query('commit');
    return { files: files.map((f) => f.name), usersExisted };
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
