import { describe, expect, it } from 'vitest';
import { AcceptList, parseAcceptList } from '../../src/core/accept-list.js';
import type { Difference } from '../../src/results/verify-report.js';

const diff = (over: Partial<Difference>): Difference => ({
  kind: 'mismatch',
  key: 'user:email:a@x.test',
  user_id: 'usr_a',
  email: 'a@x.test',
  column: 'current_credits',
  expected: '120',
  actual: '100',
  ...over,
});

describe('parseAcceptList', () => {
  it('reads keys, optional [kind[:column or reason]], reasons; skips comments and blank lines; CRLF too', () => {
    const text = [
      '# accepted by billing',
      '',
      'user:email:a@x.test  [mismatch:current_credits]  refund pending, OPS-12',
      'usr_b\tnew-app test account # not a comment: part of the reason',
      '"user:email:odd key@x.test" [not_migratable:not_json] broken since 2021',
      '  user:email:c@x.test [missing] deleted on request\r',
    ].join('\r\n');
    expect(parseAcceptList(text)).toEqual({
      problems: [],
      entries: [
        { line: 3, key: 'user:email:a@x.test', kind: 'mismatch', detail: 'current_credits', reason: 'refund pending, OPS-12' },
        { line: 4, key: 'usr_b', kind: undefined, detail: undefined, reason: 'new-app test account # not a comment: part of the reason' },
        { line: 5, key: 'user:email:odd key@x.test', kind: 'not_migratable', detail: 'not_json', reason: 'broken since 2021' },
        { line: 6, key: 'user:email:c@x.test', kind: 'missing', detail: undefined, reason: 'deleted on request' },
      ],
    });
  });

  it.each([
    ['user:email:a@x.test', 'line 1: "user:email:a@x.test" has no reason'],
    ['user:email:a@x.test [missing]', 'line 1: "user:email:a@x.test" has no reason'],
    ['user:email:a@x.test [differ] why', 'line 1: [differ]: the kind must be one of'],
    ['user:email:a@x.test [mismatch:credits] why', 'line 1: [mismatch:credits]: "credits" is not a column'],
    ['user:email:a@x.test [not_migratable:broken] why', 'line 1: [not_migratable:broken]: "broken" is not a reason code'],
    ['user:email:a@x.test [missing:email] why', 'line 1: [missing:email]: missing takes no column or reason'],
    ['"user:email:a@x.test why', 'line 1: the quoted key has no closing quote'],
    ['"user:email:a@x.test"why', 'line 1: the quoted key must be followed by a space'],
  ])('%s is refused: %s', (line, problem) => {
    const parsed = parseAcceptList(line);
    expect(parsed.entries).toEqual([]);
    expect(parsed.problems).toHaveLength(1);
    expect(parsed.problems[0]).toContain(problem);
  });

  it('a repeated entry names the line it repeats; the same key for another kind is not a repeat', () => {
    const parsed = parseAcceptList(['k one', 'k [missing] two', 'k three'].join('\n'));
    expect(parsed.problems).toEqual(['line 3: repeats line 1']);
    expect(parsed.entries).toHaveLength(2);
  });
});

describe('AcceptList.matches', () => {
  const list = new AcceptList(
    'accept.txt',
    parseAcceptList(
      ['user:email:a@x.test [mismatch:current_credits] refund', 'usr_a any problem of this user', 'user:email:b@x.test [missing] gone'].join('\n'),
    ).entries,
  );

  it('matches by key or user_id, the most specific entry first', () => {
    expect(list.matches(diff({})).map((e) => e.line)).toEqual([1, 2]);
    expect(list.matches(diff({ column: 'email' })).map((e) => e.line)).toEqual([2]);
    expect(list.matches(diff({ key: null, kind: 'only_in_postgres', column: null })).map((e) => e.line)).toEqual([2]);
  });

  it('a kind or column restriction is kept', () => {
    expect(list.matches(diff({ key: 'user:email:b@x.test', user_id: 'usr_b', kind: 'missing', column: null }))).toHaveLength(1);
    expect(list.matches(diff({ key: 'user:email:b@x.test', user_id: 'usr_b' }))).toEqual([]);
    expect(list.matches(diff({ key: 'user:email:c@x.test', user_id: 'usr_c' }))).toEqual([]);
  });
});
