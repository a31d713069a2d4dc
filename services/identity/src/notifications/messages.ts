/**
 * The texts of identity's security notifications: short, plain, one subject
 * per kind. A mail carries no secret except the one-time token it exists to
 * deliver (a password reset, an email confirmation or an invitation).
 */

/** Every kind of notification mail. */
export type NotificationKind =
  | "password_reset"
  | "password_changed"
  | "email_change_confirm"
  | "email_change_requested"
  | "email_changed"
  | "passkey_added"
  | "mfa_disabled"
  | "recovery_codes_viewed"
  | "recovery_code_used"
  | "invited"
  | "new_device_sign_in"
  | "mfa_codes_guessed"
  | "api_key_exposed"
  | "api_key_expiring";

/** What a text may use. */
export interface MessageFacts {
  readonly displayName: string;
  /** The one-time token (password_reset, email_change_confirm only). */
  readonly token?: string;
  /** The link that carries the one-time token (invited only). */
  readonly link?: string;
  readonly expiresAt?: Date;
  /** The other address of an email change (the new one for notices to the old). */
  readonly otherEmail?: string;
  /** A password change by reset token rather than with the old password. */
  readonly reset?: boolean;
  readonly device?: string;
  readonly ipAddress?: string;
  readonly time?: Date;
  /** Until when second-factor codes are refused (mfa_codes_guessed). */
  readonly lockedUntil?: Date;
  /** How many wrong codes were counted (mfa_codes_guessed). */
  readonly failures?: number;
  /** The API key's name and public id (api_key_exposed, api_key_expiring); never its secret. */
  readonly keyName?: string;
  readonly keyId?: string;
  /** Where an exposed key was found, and who reported it, as reported (api_key_exposed). */
  readonly foundAt?: string;
  readonly reporter?: string;
}

const notYou = "If this was not you, contact your administrator at once.";

/** Subject and body of one notification. */
export function composeMessage(kind: NotificationKind, f: MessageFacts): { subject: string; text: string } {
  const hello = `Hello ${oneLine(f.displayName) || "there"},`;
  const at = f.time !== undefined ? ` at ${f.time.toISOString()}` : "";
  const until = f.expiresAt !== undefined ? ` It is valid until ${f.expiresAt.toISOString()} and can be used once.` : "";
  const body = (lines: string[]): string => [hello, "", ...lines, "", "— Bulwark"].join("\n");
  switch (kind) {
    case "password_reset":
      return {
        subject: "Reset your password",
        text: body([`Someone asked to reset your password. Use this reset token to choose a new one:`, "", `  ${f.token ?? ""}`, "", `${until.trim()} If you did not ask for it, ignore this mail; your password stays as it is.`]),
      };
    case "password_changed":
      return { subject: "Your password was changed", text: body([`Your password was ${f.reset === true ? "reset with a reset token" : "changed"}${at}. Your other sessions were signed out.`, notYou]) };
    case "email_change_confirm":
      return {
        subject: "Confirm your new email address",
        text: body([`Someone asked to make this address the email of your account. Use this confirmation token to confirm it:`, "", `  ${f.token ?? ""}`, "", `${until.trim()} If you did not ask for it, ignore this mail.`]),
      };
    case "email_change_requested":
      return {
        subject: "Your email address is about to change",
        text: body([`Someone asked to change the email of your account to ${oneLine(f.otherEmail ?? "another address")}${at}. The change takes effect only when the new address confirms it.`, notYou]),
      };
    case "email_changed":
      return { subject: "Your email address was changed", text: body([`The email of your account was changed to ${oneLine(f.otherEmail ?? "another address")}${at}. This address no longer signs in.`, notYou]) };
    case "passkey_added":
      return { subject: "A passkey was added to your account", text: body([`A new passkey was added to your account${at}.`, notYou]) };
    case "mfa_disabled":
      return { subject: "Two-step verification was turned off", text: body([`Two-step verification was turned off for your account${at}.`, notYou]) };
    case "recovery_codes_viewed":
      return { subject: "Your recovery codes were viewed", text: body([`The recovery codes of your account were viewed${at}.`, notYou]) };
    case "recovery_code_used":
      return { subject: "A recovery code was used", text: body([`A recovery code was used to sign in to your account${at}. Each code works once.`, notYou]) };
    case "invited":
      return {
        subject: "You were invited to Bulwark",
        text: body(["An administrator invited you to an account. Open this link to choose your password and activate it:", "", `  ${f.link ?? ""}`, "", `${until.trim()} If you did not expect this, ignore this mail.`]),
      };
    case "new_device_sign_in":
      return {
        subject: "New sign-in to your account",
        text: body([`Your account was signed in to from a new device${at}:`, `  device: ${oneLine(f.device ?? "") || "unknown"}`, `  address: ${oneLine(f.ipAddress ?? "") || "unknown"}`, notYou]),
      };
    case "mfa_codes_guessed":
      return {
        subject: "Someone is guessing your two-step verification codes",
        text: body([
          `${f.failures !== undefined && f.failures > 0 ? f.failures : "Several"} wrong two-step verification codes were entered for your account${at}, from ${oneLine(f.ipAddress ?? "") || "an unknown address"}.`,
          `Whoever entered them knew your password. Codes are refused${f.lockedUntil !== undefined ? ` until ${f.lockedUntil.toISOString()}` : " for a while"}.`,
          "If this was not you, change your password now and tell your administrator.",
        ]),
      };
    case "api_key_exposed":
      return {
        subject: "Your API key was found in public and revoked",
        text: body([
          `Your API key ${oneLine(f.keyName ?? "") || "(unnamed)"} (${oneLine(f.keyId ?? "")}) was reported as found in a public place${f.foundAt !== undefined && f.foundAt !== "" ? `: ${oneLine(f.foundAt)}` : ""}${f.reporter !== undefined && f.reporter !== "" ? ` (reported by ${oneLine(f.reporter)})` : ""}.`,
          "It was revoked at once and no longer works. Create a new key, and remove the old one from where it was published.",
        ]),
      };
    case "api_key_expiring":
      return {
        subject: "Your API key expires soon",
        text: body([`Your API key ${oneLine(f.keyName ?? "") || "(unnamed)"} (${oneLine(f.keyId ?? "")}) expires${f.expiresAt !== undefined ? ` at ${f.expiresAt.toISOString()}` : " within seven days"}. Rotate it before then to keep your integration working.`]),
      };
  }
}

/** Keeps user-supplied text on one line and short (no header or layout tricks). */
function oneLine(s: string): string {
  return s.replace(/[\r\n\t]+/g, " ").slice(0, 200);
}
