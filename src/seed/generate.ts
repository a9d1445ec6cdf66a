/**
 * Synthetic users in the old app's record format, with the variety real data has: field aliases,
 * numeric strings, four timestamp styles, mixed-case keys, and a few deliberately bad records.
 * Deterministic for a given seed.
 */
export interface SeedEntry {
  readonly key: string;
  readonly kind: 'string' | 'hash';
  readonly value: string;
}

export interface SeedOptions {
  readonly count: number;
  readonly prefix: string;
  readonly seed: number;
}

/**
 * The demo's whitelisted users (bin/demo.sh passes exactly these as WHITELIST_EMAILS): users 1 and 2 of every
 * seed. Any other seeded user is an ordinary one.
 */
export const DEMO_WHITELIST = ['vip1@demo.test', 'vip2@demo.test'] as const;

/** Mail domains of seeded users: a key under --match whose email is in one of them was written by a seed. */
const DEMO_DOMAINS = ['@demo.test', '@bad.demo.test'];

export function isSeedKey(key: string, prefix: string): boolean {
  if (!key.startsWith(prefix)) return false;
  const email = key.slice(prefix.length).toLowerCase();
  return DEMO_DOMAINS.some((domain) => email.endsWith(domain));
}

/** Bad records, one of each, added once the data set has at least this many users. */
export const BAD_RECORD_KINDS = [
  'not_json',
  'not_object',
  'missing_user_id',
  'email_mismatch',
  'negative_credits',
  'invalid_credits',
  'wrong_type',
  'duplicate_email',
] as const;

/** Bad records are added once the data set has this many users; they are this many keys (the twin is two). */
const BAD_RECORDS_FROM = 20;
export const badRecordCount = (count: number): number => (count >= BAD_RECORDS_FROM ? BAD_RECORD_KINDS.length + 1 : 0);

export function* generateUsers(options: SeedOptions): Generator<SeedEntry> {
  const random = mulberry32(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const base = Date.UTC(2023, 0, 1);
  for (let i = 1; i <= options.count; i++) {
    const n = String(i).padStart(7, '0');
    const email = DEMO_WHITELIST[i - 1] ?? `user${n}@demo.test`;
    const keyEmail = random() < 0.05 ? email.toUpperCase() : email;
    const created = base + Math.floor(random() * 500 * 86_400_000);
    const credits = Math.floor(random() * 5000);
    const record: Record<string, unknown> = {
      user_id: `usr_${(options.seed * 1_000_003 + i).toString(16).padStart(8, '0')}`,
      email: random() < 0.1 ? ` ${email.toUpperCase()} ` : email,
      username: random() < 0.9 ? `user ${n}` : null,
      avatar: random() < 0.5 ? `https://cdn.demo.test/a/${n}.png` : null,
      password_hash: random() < 0.8 ? `$2b$12$${n}demoHashNotARealOne00000000000000000000000` : null,
    };
    const style = pick(['current', 'alias', 'string'] as const);
    if (style === 'current') record.current_credits = credits;
    else if (style === 'alias') record.credits = credits;
    else record.current_credits = String(credits);
    if (random() < 0.7) record[random() < 0.5 ? 'total_credits_used' : 'credits_used'] = Math.floor(random() * 900);
    if (random() < 0.6) record[pick(['current_plan_id', 'plan_id', 'plan'])] = pick(['free', 'basic', 'pro']);
    if (random() < 0.3) record.plan_renew_at = new Date(created + 30 * 86_400_000).toISOString();
    record.created_at = timestamp(created, pick(['iso_offset', 'iso_naive', 'epoch_s', 'epoch_ms'] as const));
    if (random() < 0.8) record.last_login = timestamp(created + 86_400_000, pick(['iso_offset', 'epoch_ms'] as const));
    if (random() < 0.1) record.legacy_flag = true;
    yield { key: `${options.prefix}${keyEmail}`, kind: 'string', value: JSON.stringify(record) };
  }
  if (badRecordCount(options.count) > 0) yield* badRecords(options.prefix);
}

function* badRecords(prefix: string): Generator<SeedEntry> {
  const k = (local: string) => `${prefix}${local}@bad.demo.test`;
  yield { key: k('not-json'), kind: 'string', value: '{"user_id": "usr_bad1", "email": ' };
  yield { key: k('not-object'), kind: 'string', value: '["usr_bad2"]' };
  yield { key: k('no-id'), kind: 'string', value: JSON.stringify({ email: 'no-id@bad.demo.test', credits: 5 }) };
  yield { key: k('mismatch'), kind: 'string', value: JSON.stringify({ user_id: 'usr_bad4', email: 'other@bad.demo.test' }) };
  yield { key: k('negative'), kind: 'string', value: JSON.stringify({ user_id: 'usr_bad5', credits: -40 }) };
  yield { key: k('word-credits'), kind: 'string', value: JSON.stringify({ user_id: 'usr_bad6', credits: 'a lot' }) };
  yield { key: k('hash'), kind: 'hash', value: JSON.stringify({ user_id: 'usr_bad7' }) };
  // Two keys for one mailbox with different user_ids: a conflict, neither is migrated.
  yield { key: k('twin'), kind: 'string', value: JSON.stringify({ user_id: 'usr_twin_a', credits: 10 }) };
  yield { key: `${prefix}TWIN@bad.demo.test`, kind: 'string', value: JSON.stringify({ user_id: 'usr_twin_b', credits: 20 }) };
}

function timestamp(millis: number, style: 'iso_offset' | 'iso_naive' | 'epoch_s' | 'epoch_ms'): string | number {
  const iso = new Date(millis).toISOString();
  if (style === 'iso_offset') return iso.replace('Z', '+00:00').replace(/\.(\d{3})/, '.$1123');
  if (style === 'iso_naive') return iso.slice(0, 19);
  if (style === 'epoch_s') return Math.floor(millis / 1000);
  return millis;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
