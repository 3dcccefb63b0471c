/**
 * The one shape of fbxen's names: run ids, xl domain and XAPI VM names, image names, and the run and
 * phase tokens of console frames and heartbeat lines. 1-64 of A-Z a-z 0-9 . _ -, starting with a letter
 * or digit: safe as a path component (never `.` or `..`, never an option), as an xl domain name, as an
 * XAPI name_label and as a space-separated token on a console line.
 */
export const NAME_TOKEN = '[A-Za-z0-9][A-Za-z0-9._-]{0,63}';

/** A whole string that is a name (no flags: `test` keeps no state, so the one instance is shared). */
export const NAME_PATTERN = new RegExp(`^${NAME_TOKEN}$`);

/** The rule in words, for messages. */
export const NAME_RULE = '1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit';
