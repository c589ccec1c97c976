// The regular expressions of HTTPRoute matches (path, header and query parameter
// values of type RegularExpression). The spec leaves the dialect to the
// implementation; Istio (Envoy) uses RE2, so ambient accepts the part of RE2 that
// JavaScript's RegExp (with the `u` flag) runs with the same meaning, translating
// RE2-only spellings that have an exact equivalent, and rejects the rest by name
// rather than run it differently. Pure.
//
// Translated: `(?P<name>re)` -> `(?<name>re)`; `\A` -> `^`; `\z` -> `$`;
//   `\x{HHHH}` -> `\u{HHHH}`; `\pL` -> `\p{L}`; an escaped ASCII punctuation
//   character (`\-`, `\_`, `\@`...; RE2 allows any) -> `\xHH`; a leading `(?i)` -> the
//   `i` flag for the whole expression.
// Rejected (RE2 does not accept them, so Istio would not either): backreferences
//   (`\1`, `\k<n>`), lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`).
// Rejected (RE2 accepts them, JavaScript has no equivalent here): inline flags other
//   than a leading `(?i)`, `\Q...\E`, `\C`, POSIX classes (`[[:alpha:]]`).
// Known difference left as is: `\s` also matches Unicode spaces in JavaScript.
//
// A match is a full match: the expression must match the whole value (Envoy's
// safe_regex semantics). JavaScript's engine backtracks, unlike RE2: a pathological
// expression such as `(a+)+$` can take exponential time on a crafted value.

export type RegexCompilation = { readonly ok: true; readonly regex: RegExp } | { readonly ok: false; readonly message: string }

const HEX = /^[0-9a-fA-F]+$/

/** Compiles an RE2-style expression for a full match, or says what is not supported. */
export function compileRouteRegex(source: string): RegexCompilation {
  const translated = translate(source)
  if (!translated.ok) return translated
  try {
    return { ok: true, regex: new RegExp(`^(?:${translated.source})$`, translated.flags) }
  } catch (err) {
    return {
      ok: false,
      message: `${JSON.stringify(source)} is not a valid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`,
    }
  }
}

function translate(source: string): { readonly ok: true; readonly source: string; readonly flags: string } | { readonly ok: false; readonly message: string } {
  const fail = (what: string): { readonly ok: false; readonly message: string } => ({ ok: false, message: `${JSON.stringify(source)}: ${what}` })
  let flags = 'u'
  let i = 0
  if (source.startsWith('(?i)')) {
    flags = 'iu'
    i = 4
  }
  let out = ''
  let inClass = false
  while (i < source.length) {
    const c = source[i]!
    if (c === '\\') {
      const next = source[i + 1]
      if (next === undefined) return fail('ends with a lone backslash')
      const escaped = translateEscape(source, i, inClass)
      if (!escaped.ok) return fail(escaped.message)
      out += escaped.text
      i = escaped.end
      continue
    }
    if (inClass) {
      if (c === '[' && source[i + 1] === ':') return fail('POSIX character classes ([[:alpha:]]) are not supported; write the range, e.g. [a-zA-Z]')
      if (c === ']') inClass = false
      out += c
      i++
      continue
    }
    if (c === '[') {
      inClass = true
      out += c
      i++
      // A ']' right after '[' or '[^' is a literal in RE2; JavaScript reads it as the end.
      if (source[i] === '^') {
        out += '^'
        i++
      }
      if (source[i] === ']') {
        out += '\\]'
        i++
      }
      continue
    }
    if (c === '(' && source[i + 1] === '?') {
      const group = translateGroup(source, i)
      if (!group.ok) return fail(group.message)
      out += group.text
      i = group.end
      continue
    }
    out += c
    i++
  }
  return { ok: true, source: out, flags }
}

type Piece = { readonly ok: true; readonly text: string; readonly end: number } | { readonly ok: false; readonly message: string }

function translateGroup(source: string, i: number): Piece {
  const rest = source.slice(i + 2)
  if (rest.startsWith(':')) return { ok: true, text: '(?:', end: i + 3 }
  if (rest.startsWith('=') || rest.startsWith('!') || rest.startsWith('<=') || rest.startsWith('<!')) {
    return { ok: false, message: 'lookahead and lookbehind are not supported (RE2 has none)' }
  }
  if (rest.startsWith('P<')) return { ok: true, text: '(?<', end: i + 4 }
  if (rest.startsWith('<')) return { ok: true, text: '(?<', end: i + 3 }
  return { ok: false, message: 'inline flags are not supported, except (?i) at the very start for the whole expression' }
}

function translateEscape(source: string, i: number, inClass: boolean): Piece {
  const next = source[i + 1]!
  if (/[1-9]/.test(next) || next === 'k') return { ok: false, message: 'backreferences are not supported (RE2 has none)' }
  if (next === 'Q' || next === 'E') return { ok: false, message: '\\Q...\\E quoting is not supported; escape each character' }
  if (next === 'C') return { ok: false, message: '\\C is not supported' }
  if (next === 'A' && !inClass) return { ok: true, text: '^', end: i + 2 }
  if (next === 'z' && !inClass) return { ok: true, text: '$', end: i + 2 }
  if (next === 'x' && source[i + 2] === '{') {
    const close = source.indexOf('}', i + 3)
    const hex = close < 0 ? '' : source.slice(i + 3, close)
    if (!HEX.test(hex)) return { ok: false, message: '\\x{...} needs hexadecimal digits' }
    return { ok: true, text: `\\u{${hex}}`, end: close + 1 }
  }
  if ((next === 'p' || next === 'P') && source[i + 2] !== '{' && source[i + 2] !== undefined) {
    return { ok: true, text: `\\${next}{${source[i + 2]}}`, end: i + 3 }
  }
  const code = next.charCodeAt(0)
  if (code < 0x80 && /[^0-9A-Za-z]/.test(next)) return { ok: true, text: `\\x${code.toString(16).padStart(2, '0')}`, end: i + 2 }
  return { ok: true, text: `\\${next}`, end: i + 2 }
}
