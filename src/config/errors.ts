/**
 * Control-plane errors. Each has a stable `code` for scripts and tests, and a message
 * that names the field path, the value found and what is allowed — so the operator can
 * fix the config without reading the source.
 */

export type ConfigErrorCode =
  | 'TUNVS_ERR_CONFIG_TYPE'
  | 'TUNVS_ERR_CONFIG_RANGE'
  | 'TUNVS_ERR_CONFIG_ADDRESS'
  | 'TUNVS_ERR_CONFIG_FAMILY'
  | 'TUNVS_ERR_CONFIG_DUPLICATE'
  | 'TUNVS_ERR_CONFIG_MISSING'
  | 'TUNVS_ERR_CONFIG_UNKNOWN'
  | 'TUNVS_ERR_CONFIG_LIMIT'
  /** An option the service's forwarding mode cannot do (e.g. TOA in TUNNEL mode). */
  | 'TUNVS_ERR_CONFIG_MODE';

export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  readonly path: string;

  constructor(code: ConfigErrorCode, path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'ConfigError';
    this.code = code;
    this.path = path;
  }
}

/** JSON text of a value for error messages, shortened. */
export function show(value: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
