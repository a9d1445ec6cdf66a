import { UsageError } from '../errors.js';
import type { RedisReadable, ServerGroup, SourceRecord } from './redis-reader.js';

type Likeness = 'same' | 'different' | 'uncompared';

/** Two files that hold the same keys: how many, by likeness of their values, and the first few names. */
interface Shared {
  readonly counts: Record<Likeness, number>;
  readonly examples: Record<Likeness, string[]>;
}

const EXAMPLES = 5;

/**
 * A Redis Cluster keeps every key on exactly one master, so one key in two masters' snapshots means a file
 * is not what was meant: a replica's, the same master's from another time, another cluster's, or files
 * taken while slots were moving. Which value is current cannot be told, and even where both are the same
 * the files may lack some master's keys altogether: the run is refused either way. Checked while the
 * stage is read, before anything is written: each batch read from one file is looked up in every file
 * after it (one read command per file; a key a file lacks costs it one EXISTS).
 */
export class SharedKeys {
  private readonly pairs = new Map<string, Shared>();

  constructor(
    private readonly group: ServerGroup,
    /** Reads `keys` from `server` as the pipeline does (a key it lacks comes back as `vanished`). */
    private readonly read: (server: RedisReadable, keys: readonly Buffer[]) => Promise<SourceRecord[]>,
  ) {}

  /** `records`: what `server` returned for `keys`, in order. */
  async check(server: RedisReadable, keys: readonly Buffer[], records: readonly SourceRecord[]): Promise<void> {
    const servers = this.group.servers;
    for (let other = servers.indexOf(server) + 1; other > 0 && other < servers.length; other++) {
      const theirs = await this.read(servers[other] as RedisReadable, keys);
      theirs.forEach((their, i) => {
        const mine = records[i];
        if (!mine || (!their.ok && their.reason === 'vanished')) return;
        const pair = `${servers.indexOf(server)}:${other}`;
        const shared = this.pairs.get(pair) ?? { counts: { same: 0, different: 0, uncompared: 0 }, examples: { same: [], different: [], uncompared: [] } };
        this.pairs.set(pair, shared);
        const likeness = compare(mine, their);
        shared.counts[likeness]++;
        if (shared.examples[likeness].length < EXAMPLES) shared.examples[likeness].push(mine.key);
      });
    }
  }

  /** The refusal, naming the files and keys, when any key is in two files. */
  problem(): UsageError | undefined {
    if (this.pairs.size === 0) return undefined;
    const name = (i: string | undefined) => this.group.names[Number(i)] ?? '?';
    const said = [...this.pairs].map(([pair, shared]) => {
      const [a, b] = pair.split(':');
      const total = shared.counts.same + shared.counts.different + shared.counts.uncompared;
      const kinds = (['different', 'same', 'uncompared'] as const)
        .filter((likeness) => shared.counts[likeness] > 0)
        .map((likeness) => {
          const n = shared.counts[likeness];
          const shown = shared.examples[likeness].join(', ');
          return `${n.toLocaleString('en-US')} ${LIKENESS[likeness]} (${shown}${n > EXAMPLES ? ', …' : ''})`;
        });
      return `${name(a)} and ${name(b)} both hold ${total.toLocaleString('en-US')} ${total === 1 ? 'key' : 'keys'}: ${kinds.join('; ')}`;
    });
    return new UsageError(
      'the --rdb files share keys, but a Redis Cluster keeps each key on one master only, so a file is not what was meant ' +
        "(a replica's, the same master's from another time, another cluster's, or files taken while slots were moving); " +
        `nothing was written. ${said.join('. ')}. Give one snapshot per master, all taken while no slot is migrating`,
    );
  }
}

const LIKENESS: Record<Likeness, string> = {
  different: 'with different values',
  same: 'with the same value',
  uncompared: 'not compared (neither value is a string of at most --max-value-bytes)',
};

function compare(mine: SourceRecord, theirs: SourceRecord): Likeness {
  if (mine.ok && theirs.ok) return mine.value === theirs.value ? 'same' : 'different';
  // Neither value was read (another type, too large, not UTF-8): the reasons say nothing of the contents.
  if (!mine.ok && !theirs.ok) return 'uncompared';
  return 'different';
}
