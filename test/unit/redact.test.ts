import { describe, expect, it } from 'vitest';
import { redactUrl, scrub, scrubValue } from '../../src/redact.js';

describe('scrub: a secret is cut out where it stands', () => {
  it.each([
    ['redis://:pw@127.0.0.1:6379/0', 'redis://:***@127.0.0.1:6379/0'],
    ['cannot use Redis at rediss://app:p@ss@h:6380/3: x', 'cannot use Redis at rediss://app:***@h:6380/3: x'],
    ['postgres://app:pa/ss@h/db (not a valid URL)', 'postgres://app:***@h/db (not a valid URL)'],
    ['postgres://app:p%40ss@h/db and postgres://b:c@d/e', 'postgres://app:***@h/db and postgres://b:***@d/e'],
    ['host=db user=app password=s3cret dbname=x', 'host=db user=app password=*** dbname=x'],
    ["host=db password='a b\\' c' dbname=x", 'host=db password=*** dbname=x'],
    ['postgres://h/db?sslmode=require&password=s3cret&x=1', 'postgres://h/db?sslmode=require&password=***&x=1'],
    ['redis://h:6379/0?password=s3cret', 'redis://h:6379/0?password=***'],
    ['{"user":"app","password":"s3cret"}', '{"user":"app","password":"***"}'],
  ])('%s', (text, scrubbed) => expect(scrub(text)).toBe(scrubbed));

  it.each([
    'cannot connect to Redis at redis://default:***@127.0.0.1:6379: wrong user name or password (WRONGPASS invalid username-password pair)',
    'cannot connect to PostgreSQL at postgres://app@db:5432/app: password required: the server asks for one and the URL has none',
    'table public.users and migrate_users.ledger not found in database "postgres"',
    'postgres://app@db:5432/app, http://h:8080/x, user:email:bob@x.test',
    '"run_id": "run_20260101_abc", "password_hash": "(set)"',
  ])("leaves the tool's own words alone: %s", (text) => expect(scrub(text)).toBe(text));

  it('redactUrl: the password of a URL, however it is written', () => {
    expect(redactUrl('postgres://app:p%40ss@db.example.com:5432/x')).toBe('postgres://app:***@db.example.com:5432/x');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(redactUrl('postgres://app:pw@h:port/x')).toBe('postgres://app:***@h:port/x');
  });
});

describe('scrubValue: logged objects and serialized errors', () => {
  it('scrubs every string, and the password argument of the AUTH / HELLO command ioredis attaches to its errors', () => {
    const at = new Date('2026-01-01T00:00:00Z');
    const value = scrubValue({
      message: 'WRONGPASS invalid username-password pair',
      command: { name: 'hello', args: ['3', 'AUTH', 'default', 'Redis'] },
      nested: { url: 'redis://default:Redis@h:6379', at, list: ['postgres://a:b@c/d', 7] },
    });
    expect(value).toEqual({
      message: 'WRONGPASS invalid username-password pair',
      command: { name: 'hello', args: ['3', 'AUTH', 'default', '***'] },
      nested: { url: 'redis://default:***@h:6379', at, list: ['postgres://a:***@c/d', 7] },
    });
    expect(scrubValue({ name: 'auth', args: ['pw'] })).toEqual({ name: 'auth', args: ['***'] });
    expect(scrubValue({ name: 'AUTH', args: ['app', 'pw'] })).toEqual({ name: 'AUTH', args: ['app', '***'] });
    expect(scrubValue({ name: 'get', args: ['user:email:a@x.test'] })).toEqual({ name: 'get', args: ['user:email:a@x.test'] });
  });
});
