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
