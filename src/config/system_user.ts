/**
 * A user's ids by name, as the system resolves it (`id`, so NSS sources count as well as
 * /etc/passwd): the exec health check runs its command as that user (keepalived's MISC_CHECK
 * `user`). config.ts refuses a name the system does not know, so a typo is a config error
 * and not every server of a service failing its check.
 */

import { execFileSync } from 'node:child_process';

export interface SystemUser {
  uid: number;
  gid: number;
}

const known = new Map<string, SystemUser>();

/** The user's uid and primary gid, or undefined when there is no such user. */
export function systemUser(name: string): SystemUser | undefined {
  const hit = known.get(name);
  if (hit) return hit;
  const id = (flag: string): number | undefined => {
    try {
      const out = execFileSync('id', [flag, '--', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      return Number(out.trim());
    } catch {
      return undefined;
    }
  };
  const uid = id('-u');
  const gid = id('-g');
  if (uid === undefined || gid === undefined || !Number.isInteger(uid) || !Number.isInteger(gid)) return undefined;
  const user = { uid, gid };
  known.set(name, user);
  return user;
}
