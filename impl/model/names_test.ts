import assert from "node:assert/strict";
import { InvalidArgumentError } from "./errors.ts";
import { MAX_NAME, nameTooLong, quotedPreview, validateName } from "./names.ts";

Deno.test("validateName() accepts 64 characters and refuses 65, naming the limit", () => {
  assert.equal(MAX_NAME, 64);
  validateName("network", "a".repeat(64));
  assert.throws(
    () => validateName("network", "a".repeat(65)),
    (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError);
      assert.equal(
        e.message,
        `Invalid network name "${"a".repeat(20)}...": longer than 64 characters (65)`,
      );
      return true;
    },
  );
  assert.equal(nameTooLong("sandbox", "a".repeat(64)), undefined);
  // the length is checked before the characters, and the message stays short
  assert.throws(() => validateName("alias", "é".repeat(100_000)), /longer than 64 characters/);
});

Deno.test("validateName() refuses empty names and odd characters", () => {
  for (const bad of ["", undefined, 7]) {
    assert.throws(() => validateName("sandbox", bad), /Invalid sandbox name: the name is empty$/);
  }
  assert.throws(() => validateName("network", "a b"), /Invalid network name "a b": only/);
  assert.throws(() => validateName("network", "-a"), /only \[a-zA-Z0-9\]/);
});

Deno.test("quotedPreview() quotes the first 20 characters, escaped, never half a character", () => {
  assert.equal(quotedPreview("web"), '"web"');
  assert.equal(quotedPreview("x".repeat(21)), `"${"x".repeat(20)}..."`);
  assert.equal(quotedPreview("a\nb"), '"a\\nb"');
  assert.equal(quotedPreview("😀".repeat(30)), `"${"😀".repeat(20)}..."`);
});
