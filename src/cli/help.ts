import type { Command } from 'commander';
import { UsageError } from '../errors.js';

/**
 * `help [command...]`, in place of commander's own help command: commander answers `help verfy` with the
 * whole help on stderr and never names the typo. Here an unknown word is refused as at top level (exit 2,
 * with the nearest command), and a path (`help schema apply`) reaches the command it names.
 */
export function addHelpCommand(parent: Command): void {
  parent.helpCommand(false);
  parent
    .command('help')
    .argument('[command]', 'the command to show the help of (and its subcommand: help schema apply)')
    .allowExcessArguments(true)
    .description('show the help of a command')
    .action((_command: unknown, _options: unknown, help: Command) => {
      let target = parent;
      for (const word of help.args) {
        if (target.commands.length === 0) throw new UsageError(`unknown command '${word}': \`migrate-users${commandPath(target)}\` has no subcommands`);
        const next = target.commands.find((c) => c.name() === word || c.aliases().includes(word));
        if (!next) throw unknownCommand(word, target);
        target = next;
      }
      target.outputHelp();
    });
}

/**
 * An unknown option is answered from every command's options, not only the one given: `verify --apply` says
 * that --apply is reconcile's (commander's own guess, by likeness of letters, was --sample); a typo of one of
 * the command's own options gets the nearest (`--dryrun`: --dry-run); anything else, no guess. Set on every
 * command once all exist (commander prints the error through the command's outputError).
 */
export function explainUnknownOptions(root: Command): void {
  for (const command of everyCommand(root)) {
    command.configureOutput({ outputError: (text, write) => write(unknownOptionMessage(text, command, root) ?? text) });
  }
}

function unknownOptionMessage(text: string, command: Command, root: Command): string | undefined {
  const given = /^error: unknown option '([^']+)'(?:\n\(Did you mean [^\n]*\))?\n$/.exec(text)?.[1];
  if (given === undefined) return undefined;
  const flag = given.split('=')[0] ?? given;
  const owners = everyCommand(root).filter((c) => c !== command && longFlags(c).includes(flag));
  const names = owners.map((c) => (c === root ? 'migrate-users' : commandPath(c).trim()));
  // The default command's options are the migrate command's too: one name for both.
  const shown = names.includes('migrate') ? names.filter((n) => n !== 'migrate-users') : names;
  let hint = '';
  if (shown.length > 0) {
    hint = `(${flag} is an option of ${words(shown)}, not of ${command === root ? 'migrate' : commandPath(command).trim()})`;
  } else if (flag.startsWith('--')) {
    const near = closest(
      flag.slice(2),
      longFlags(command).map((f) => f.slice(2)),
    );
    if (near !== undefined) hint = `(Did you mean --${near}?)`;
  }
  return `error: unknown option '${given}'${hint ? `\n${hint}` : ''}\n`;
}

function everyCommand(root: Command): Command[] {
  return [root, ...root.commands.flatMap((c) => everyCommand(c))];
}

function longFlags(command: Command): string[] {
  return command.options.flatMap((o) => (o.long === undefined ? [] : [o.long]));
}

/** "a", "a and b", "a, b and c". */
function words(list: readonly string[]): string {
  return list.length <= 1 ? (list[0] ?? '') : `${list.slice(0, -1).join(', ')} and ${list[list.length - 1] ?? ''}`;
}

/** "unknown command 'verfy' (did you mean verify?)": for the default command's words and for `help <word>`. */
export function unknownCommand(word: string, parent: Command): UsageError {
  const names = [...new Set(parent.commands.map((c) => c.name()).concat('help'))];
  if (names.includes(word)) {
    return new UsageError(`'${word}' is a command of its own: \`migrate-users ${word} …\`, not \`migrate-users migrate ${word}\``);
  }
  const close = closest(word, names);
  const hint = close ? ` (did you mean ${close}?)` : '';
  const path = commandPath(parent);
  return new UsageError(`unknown command '${word}'${hint}; the commands are ${names.join(', ')}: \`migrate-users help${path}\` lists them`);
}

/** The candidate a typo most likely meant: within a third of its length in edits (at least one), else none. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  return candidates
    .map((name) => ({ name, distance: editDistance(word.toLowerCase(), name) }))
    .filter((c) => c.distance <= Math.max(1, Math.floor(c.name.length / 3)))
    .sort((a, b) => a.distance - b.distance)[0]?.name;
}

/** " schema" for `migrate-users schema`, "" for the program itself. */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c = command; c.parent; c = c.parent) names.unshift(c.name());
  return names.map((n) => ` ${n}`).join('');
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, (previous[j - 1] as number) + cost);
    }
    previous = current;
  }
  return previous[b.length] as number;
}
