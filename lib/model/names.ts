/**
 * The shape of a name that travels between servers and ends up in a topic, a
 * folder or a log line (group, server id, line id): letters, digits, dot,
 * underscore and hyphen, up to 64, never starting with a dot or a hyphen.
 */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
