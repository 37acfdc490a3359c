/**
 * Import scanning for the dependency tests (conformance/imports_test.ts,
 * tools/dependency_test.ts). The first rule it serves: the suite shares no code with what it judges: no module under conformance/ may import
 * from impl/ or from the repository's top-level mod.ts (which re-exports impl/), directly
 * or through a local module outside conformance/ (tools/, testing/, ...). Static imports,
 * `export ... from`, `import type`, and `import("...")` with a literal specifier (dynamic,
 * or in a type) all count. A conformance case judges an implementation from the outside
 * only, through `conformance/impl.ts`.
 * @module
 */
/** A module specifier found in a source text. */
export interface Specifier {
  specifier: string;
  /** 1-based line of the specifier's string literal. */
  line: number;
  kind: "static" | "dynamic";
}

interface Token {
  type: "id" | "num" | "str" | "tpl" | "regex" | "punct";
  /** Identifier or punctuator text; a string's (or substitution-free template's) value. */
  value: string;
  /** For "tpl": true when the template has `${...}` substitutions. */
  substituted?: boolean;
  line: number;
}

/** Keywords after which a `/` starts a regular expression, not a division. */
const REGEX_AFTER = new Set([
  "return",
  "typeof",
  "instanceof",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "case",
  "do",
  "else",
  "yield",
  "await",
]);

/**
 * Splits TypeScript source into the tokens that matter for finding imports: comments are
 * dropped, strings, templates and regular expressions are whole tokens (so an "import"
 * inside one is not code).
 */
function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  let line = 1;
  /** Brace depth at which each open template's `${` started. */
  const templates: number[] = [];
  let depth = 0;
  const advance = (to: number) => {
    for (let k = i; k < to && k < src.length; k++) if (src[k] === "\n") line++;
    i = to;
  };
  const regexAllowed = () => {
    const p = out[out.length - 1];
    if (!p) return true;
    if (p.type === "id") return REGEX_AFTER.has(p.value);
    if (p.type === "punct") return ![")", "]", "}"].includes(p.value);
    return false;
  };
  /** Scans template text from i (just after "`" or "}") to "`" or "${". */
  const templatePart = (startLine: number): { text: string; open: boolean } => {
    let text = "";
    while (i < src.length) {
      const c = src[i];
      if (c === "\\") {
        text += src[i + 1] ?? "";
        advance(i + 2);
      } else if (c === "`") {
        advance(i + 1);
        return { text, open: false };
      } else if (c === "$" && src[i + 1] === "{") {
        advance(i + 2);
        return { text, open: true };
      } else {
        text += c;
        advance(i + 1);
      }
    }
    throw new Error(`unterminated template literal from line ${startLine}`);
  };
  while (i < src.length) {
    const c = src[i];
    const start = line;
    if (/\s/.test(c)) {
      advance(i + 1);
    } else if (c === "/" && src[i + 1] === "/") {
      const end = src.indexOf("\n", i);
      advance(end < 0 ? src.length : end);
    } else if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      advance(end < 0 ? src.length : end + 2);
    } else if (c === "'" || c === '"') {
      let value = "";
      let k = i + 1;
      for (; k < src.length && src[k] !== c && src[k] !== "\n"; k++) {
        if (src[k] === "\\") k++;
        value += src[k] ?? "";
      }
      advance(k + 1);
      out.push({ type: "str", value, line: start });
    } else if (c === "`") {
      advance(i + 1);
      const part = templatePart(start);
      if (part.open) templates.push(depth);
      out.push({ type: "tpl", value: part.text, substituted: part.open, line: start });
    } else if (c === "}" && templates.length && templates[templates.length - 1] === depth) {
      advance(i + 1);
      const part = templatePart(start);
      if (!part.open) templates.pop();
    } else if (c === "/" && regexAllowed()) {
      let k = i + 1;
      let inClass = false;
      for (; k < src.length && src[k] !== "\n"; k++) {
        if (src[k] === "\\") k++;
        else if (src[k] === "[") inClass = true;
        else if (src[k] === "]") inClass = false;
        else if (src[k] === "/" && !inClass) break;
      }
      k++;
      while (k < src.length && /[a-z]/i.test(src[k])) k++;
      out.push({ type: "regex", value: src.slice(i, k), line: start });
      advance(k);
    } else if (/[A-Za-z_$#]/.test(c) || c.charCodeAt(0) > 127) {
      const m = /^[#]?[\w$\u0080-\uffff]+/.exec(src.slice(i, i + 256))!;
      out.push({ type: "id", value: m[0], line: start });
      advance(i + m[0].length);
    } else if (/\d/.test(c) || (c === "." && /\d/.test(src[i + 1] ?? ""))) {
      const m = /^[\d.]+(?:e[+-]?\d+)?[\w]*/i.exec(src.slice(i, i + 256))!;
      out.push({ type: "num", value: m[0], line: start });
      advance(i + m[0].length);
    } else {
      if (c === "{") depth++;
      if (c === "}") depth--;
      out.push({ type: "punct", value: c, line: start });
      advance(i + 1);
    }
  }
  return out;
}

/** Tokens an import or export clause may hold before its `from "..."`. */
function inClause(t: Token): boolean {
  return t.type === "id" || (t.type === "punct" && ["{", "}", ",", "*"].includes(t.value));
}

/**
 * The module specifiers of a TypeScript source: static `import ... from "x"`,
 * `import "x"`, `export ... from "x"` (type-only forms too), and `import("x")` with a
 * string (or substitution-free template) literal, in a value or a type.
 */
export function findSpecifiers(src: string): Specifier[] {
  const toks = tokenize(src);
  const found: Specifier[] = [];
  const literal = (t: Token | undefined) =>
    t !== undefined && (t.type === "str" || (t.type === "tpl" && !t.substituted));
  /** Scans an import/export clause from j for `from "x"`. */
  const fromClause = (j: number) => {
    for (; j < toks.length && inClause(toks[j]); j++) {
      if (toks[j].type === "id" && toks[j].value === "from" && literal(toks[j + 1])) {
        const s = toks[j + 1];
        found.push({ specifier: s.value, line: s.line, kind: "static" });
        return;
      }
    }
  };
  toks.forEach((t, i) => {
    if (t.type !== "id") return;
    const prev = toks[i - 1];
    if (prev?.type === "punct" && prev.value === ".") return; // x.import, x.export
    const next = toks[i + 1];
    if (t.value === "import") {
      if (next?.type === "punct" && next.value === "(") {
        const arg = toks[i + 2];
        const after = toks[i + 3];
        if (literal(arg) && after?.type === "punct" && [")", ","].includes(after.value)) {
          found.push({ specifier: arg.value, line: arg.line, kind: "dynamic" });
        }
      } else if (next?.type === "punct" && next.value === ".") {
        // import.meta
      } else if (next?.type === "str") {
        found.push({ specifier: next.value, line: next.line, kind: "static" });
      } else {
        fromClause(i + 1);
      }
    } else if (t.value === "export" && next) {
      const head = next.type === "id" && next.value === "type" ? toks[i + 2] : next;
      if (head?.type === "punct" && (head.value === "{" || head.value === "*")) fromClause(i + 1);
    }
  });
  return found;
}

/**
 * Resolves a specifier written in module `from` (a file URL) against the file's path, or
 * through the import map (`imports` of deno.json, whose directory is `mapBase`). Returns
 * undefined for registries and remote modules (npm:, jsr:, node:, https:, ...).
 */
export function resolveSpecifier(
  specifier: string,
  from: URL,
  imports: Record<string, string>,
  mapBase: URL,
): URL | undefined {
  if (/^\.{0,2}\//.test(specifier) || specifier.startsWith("file:")) {
    return new URL(specifier, from);
  }
  let target: string | undefined = imports[specifier];
  if (target === undefined) {
    const key = Object.keys(imports)
      .filter((k) => k.endsWith("/") && specifier.startsWith(k))
      .sort((a, b) => b.length - a.length)[0];
    if (key !== undefined) target = imports[key] + specifier.slice(key.length);
  }
  if (target === undefined) return undefined;
  if (/^\.{0,2}\//.test(target) || target.startsWith("file:")) return new URL(target, mapBase);
  return undefined;
}

/** The checker's view of the repository. */
export interface ImportCheck {
  /** The repository root, as a directory URL (ending in "/"). */
  root: URL;
  /** Repository-relative paths of the modules to check (those of conformance/). */
  files: string[];
  /** A module's text by repository-relative path, or undefined when there is none. */
  read(path: string): string | undefined;
  /** deno.json's `imports`. */
  imports?: Record<string, string>;
}

/** True for modules the suite must not reach: impl/ and the top-level mod.ts. */
function judged(path: string): boolean {
  return path.startsWith("impl/") || path === "mod.ts";
}

/**
 * Every import (by the rules of {@linkcode findSpecifiers}) by which a checked module
 * reaches impl/ or the top-level mod.ts, directly or through local modules outside
 * `conformance/`, as one line each: `FILE:LINE: imports "SPEC" (PATH) ...`.
 */
export function forbiddenImports(check: ImportCheck): string[] {
  const { root, imports = {} } = check;
  const relative = (u: URL) =>
    u.href.startsWith(root.href) ? decodeURIComponent(u.href.slice(root.href.length)) : undefined;
  /** Per module outside conformance/: the first chain into judged code, or "". */
  const via = new Map<string, string>();
  const chainFrom = (path: string, seen: Set<string>): string => {
    if (via.has(path)) return via.get(path)!;
    if (seen.has(path)) return "";
    seen.add(path);
    const src = check.read(path);
    let chain = "";
    for (const s of src === undefined ? [] : findSpecifiers(src)) {
      const target = step(path, s, seen);
      if (target) {
        chain = `${path}:${s.line} imports "${s.specifier}"${target}`;
        break;
      }
    }
    via.set(path, chain);
    return chain;
  };
  /** "" when the import is fine, else the rest of its message. */
  const step = (path: string, s: Specifier, seen: Set<string>): string => {
    const url = resolveSpecifier(s.specifier, new URL(path, root), imports, root);
    const to = url && relative(url);
    if (to === undefined) return "";
    if (judged(to)) return ` (${to})`;
    if (to.startsWith("conformance/") || !/\.(ts|tsx|js|mjs|mts)$/.test(to)) return "";
    const chain = chainFrom(to, seen);
    return chain ? `, and ${chain}` : "";
  };
  const problems: string[] = [];
  for (const path of check.files) {
    const src = check.read(path);
    if (src === undefined) continue;
    let specs: Specifier[];
    try {
      specs = findSpecifiers(src);
    } catch (e) {
      problems.push(`${path}: cannot scan: ${e instanceof Error ? e.message : e}`);
      continue;
    }
    for (const s of specs) {
      const rest = step(path, s, new Set());
      if (rest) {
        problems.push(
          `${path}:${s.line}: ${
            s.kind === "dynamic" ? "dynamically " : ""
          }imports "${s.specifier}"${rest}: the suite must share no code with what it judges`,
        );
      }
    }
  }
  return problems;
}
