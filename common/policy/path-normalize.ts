// Request path normalization as Istio's default configuration does it
// (meshConfig.pathNormalization BASE), i.e. what Envoy's HTTP connection manager does
// before any filter sees the request, with Istio's settings: the normalized path is
// both what AuthorizationPolicy paths are matched against (without the query) and
// what the waypoint forwards. Pure.
//
// The steps, in Envoy's order (source/common/http/conn_manager_utility.cc
// maybeNormalizePath, path_utility.cc canonicalPath):
// 1. A path that is empty or does not start with `/` never gets there: Envoy answers
//    404 (response details `missing_path` / `absolute_path`).
// 2. `#fragment` is cut off (Istio's bootstrap sets
//    envoy.reloadable_features.http_reject_path_with_fragment=false, so Envoy strips it
//    instead of rejecting the request).
// 3. Escaped slashes `%2F` and `%5C` are kept as they are (BASE maps to
//    path_with_escaped_slashes_action KEEP_UNCHANGED; only DECODE_AND_MERGE_SLASHES
//    decodes them).
// 4. normalize_path: path parameters are stripped from dot segments (`/..;x` -> `/..`,
//    `/.;x` -> `/.`, Envoy's strip_dotdot_segments_with_parameters), then the part
//    before `?` goes through Chromium's URL path canonicalizer (the googleurl copy
//    Envoy builds, url_canon_path.cc with the IE-compatible character table):
//    - `\` is a path separator and becomes `/`;
//    - dot segments are removed as in RFC 3986 section 5.2.4, `%2e`/`%2E` counting as a
//      dot (and decoded to `.` wherever it appears); `..` never climbs above `/`;
//    - a percent-escape of an unreserved character (ALPHA, DIGIT, `-`, `_`, `~`) is
//      decoded; any other valid escape is copied unchanged, hex case included
//      (`%2f` stays `%2f`: no case normalization); a `%` not followed by two hex
//      digits is copied as is;
//    - `%00` (or a raw NUL) makes the path invalid: Envoy answers 400
//      (`path_normalization_failed`);
//    - space, `"`, `#`, `<`, `>`, `?`, `^`, backquote, `{`, `|`, `}`, DEL, control
//      characters and bytes 0x80-0xFF are percent-encoded (upper-case hex); the rest
//      of printable ASCII is copied.
//    The query (from the first `?`) is re-attached unchanged.
// 5. MERGE_SLASHES (opt-in, not Istio's default): runs of `/` in the path part become
//    one.
//
// Characters: the input is a JavaScript string as Node's HTTP stack delivers it, one
// code unit per byte (latin1): code units 0x00-0xFF are bytes. Code units above 0xFF
// cannot come from the wire; they are encoded as UTF-8 and escaped (Chromium's
// behaviour for 16-bit input), and a lone surrogate makes the path invalid.

export interface PathNormalizeOptions {
  /** meshConfig pathNormalization MERGE_SLASHES: merge runs of `/` after normalizing. Default false (BASE). */
  readonly mergeSlashes?: boolean
}

export type PathNormalization =
  | {
      readonly ok: true
      /** The normalized path with its query: what the waypoint forwards and prints. */
      readonly path: string
      /** `path` without the query: what `paths` / `notPaths` are matched against. */
      readonly pathOnly: string
    }
  | {
      readonly ok: false
      /** What Envoy answers: 404 for a missing or non-relative path, 400 for one it cannot normalize. */
      readonly status: 400 | 404
      readonly reason: string
    }

const PASS = 0
const SPECIAL = 1
const ESCAPE = 3 // escape bit | SPECIAL
const UNESCAPE = 4 // not SPECIAL: copied when raw, decoded when escaped
const INVALID = 9 // invalid bit | SPECIAL

/** Chromium's kPathCharLookup (IE-compatible table), one entry per byte. */
const LOOKUP: Uint8Array = (() => {
  const t = new Uint8Array(256).fill(ESCAPE) // control characters and 0x7F-0xFF
  t[0] = INVALID
  for (let c = 0x21; c < 0x7f; c++) t[c] = PASS
  for (const ch of ' "#%<>?\\^`{|}') t[ch.charCodeAt(0)] = ESCAPE
  t['.'.charCodeAt(0)] = SPECIAL
  for (let c = 0x30; c <= 0x39; c++) t[c] = UNESCAPE
  for (let c = 0x41; c <= 0x5a; c++) t[c] = UNESCAPE
  for (let c = 0x61; c <= 0x7a; c++) t[c] = UNESCAPE
  for (const ch of '-_~') t[ch.charCodeAt(0)] = UNESCAPE
  return t
})()

const HEX = '0123456789ABCDEF'
const escapeByte = (b: number): string => `%${HEX[b >> 4]}${HEX[b & 15]}`

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30
  if (code >= 0x41 && code <= 0x46) return code - 0x37
  if (code >= 0x61 && code <= 0x66) return code - 0x57
  return -1
}

/** Length of a dot at `i` (`.` is 1, `%2e`/`%2E` is 3), 0 when none (Chromium's IsDot). */
function dotLength(s: string, i: number): number {
  if (s.charCodeAt(i) === 0x2e) return 1
  if (s.charCodeAt(i) === 0x25 && i + 3 <= s.length && s[i + 1] === '2' && (s[i + 2] === 'e' || s[i + 2] === 'E')) return 3
  return 0
}

const isSlash = (s: string, i: number): boolean => s[i] === '/' || s[i] === '\\'

type DotKind = { readonly kind: 'name' } | { readonly kind: 'current' | 'up'; readonly consumed: number }

/** Chromium's ClassifyAfterDot: what a dot preceded by a slash means, given what follows it. */
function classifyAfterDot(s: string, after: number): DotKind {
  if (after === s.length) return { kind: 'current', consumed: 0 }
  if (isSlash(s, after)) return { kind: 'current', consumed: 1 }
  const second = dotLength(s, after)
  if (second > 0) {
    const next = after + second
    if (next === s.length) return { kind: 'up', consumed: second }
    if (isSlash(s, next)) return { kind: 'up', consumed: second + 1 }
  }
  return { kind: 'name' }
}

/** The output without its last segment, keeping the slash before it (never above the first `/`). */
function backUpToPreviousSlash(out: string[]): void {
  let i = out.length - 1
  if (i <= 0) return
  do i--
  while (i > 0 && out[i] !== '/')
  out.length = i + 1
}

/** UTF-8 bytes of the code point at `i` (a surrogate pair counts as one), or null for a lone surrogate. */
function utf8At(s: string, i: number): { readonly bytes: readonly number[]; readonly units: number } | null {
  const cp = s.codePointAt(i)!
  if (cp >= 0xd800 && cp <= 0xdfff) return null
  return { bytes: [...Buffer.from(String.fromCodePoint(cp), 'utf8')], units: cp > 0xffff ? 2 : 1 }
}

/**
 * Chromium's CanonicalizePath over the path part (no query, no fragment), which
 * starts with `/`. Returns null when the path is invalid (`%00`, NUL, lone surrogate).
 */
function canonicalize(path: string): string | null {
  const out: string[] = []
  let valid = true
  for (let i = 0; i < path.length; i++) {
    const code = path.charCodeAt(i)
    if (code > 0xff) {
      const utf8 = utf8At(path, i)
      if (utf8 === null) {
        valid = false
        out.push(escapeByte(0xef), escapeByte(0xbf), escapeByte(0xbd))
        continue
      }
      for (const b of utf8.bytes) out.push(escapeByte(b))
      i += utf8.units - 1
      continue
    }
    const flags = LOOKUP[code]!
    if ((flags & SPECIAL) === 0) {
      out.push(path[i]!)
      continue
    }
    const dot = dotLength(path, i)
    if (dot > 0) {
      if (out.length > 0 && out[out.length - 1] === '/') {
        const after = classifyAfterDot(path, i + dot)
        if (after.kind === 'name') out.push('.')
        else if (after.kind === 'up') backUpToPreviousSlash(out)
        i += dot - 1 + (after.kind === 'name' ? 0 : after.consumed)
      } else {
        out.push('.')
        i += dot - 1
      }
    } else if (code === 0x5c) {
      out.push('/')
    } else if (code === 0x25) {
      const hi = i + 2 < path.length ? hexValue(path.charCodeAt(i + 1)) : -1
      const lo = hi >= 0 ? hexValue(path.charCodeAt(i + 2)) : -1
      if (lo < 0) {
        out.push('%') // not an escape: copied, the next characters are read as usual
        continue
      }
      const value = hi * 16 + lo
      const decoded = LOOKUP[value]!
      if (decoded === UNESCAPE) out.push(String.fromCharCode(value))
      else {
        if (decoded === INVALID) valid = false
        out.push(path.slice(i, i + 3))
      }
      i += 2
    } else {
      if (flags === INVALID) valid = false
      out.push(escapeByte(code))
    }
  }
  return valid ? out.join('') : null
}

/** Envoy's stripParametersFromDotSegments: `..;params` -> `..`, `.;params` -> `.` (literal dots only). */
function stripDotSegmentParameters(path: string): string {
  if (!path.includes('.;')) return path
  return path
    .split('/')
    .map((segment) => (segment.startsWith('..;') ? '..' : segment.startsWith('.;') ? '.' : segment))
    .join('/')
}

/** Envoy's PathUtil::mergeSlashes on the path part. */
function mergeSlashes(path: string): string {
  if (!path.includes('//')) return path
  const inner = path.split('/').filter((s) => s !== '')
  return `${path.startsWith('/') ? '/' : ''}${inner.join('/')}${path.endsWith('/') ? '/' : ''}`
}

/**
 * Normalizes a request path as received (`:path` / the HTTP/1 request target, query
 * included) the way an Istio waypoint's Envoy does by default. See the file comment
 * for the exact steps.
 */
export function normalizePath(rawPathWithQuery: string, options: PathNormalizeOptions = {}): PathNormalization {
  if (rawPathWithQuery === '') return { ok: false, status: 404, reason: 'the request has no path' }
  if (rawPathWithQuery[0] !== '/') {
    return { ok: false, status: 404, reason: `path ${JSON.stringify(rawPathWithQuery)} is not relative (it must start with "/")` }
  }
  const hash = rawPathWithQuery.indexOf('#')
  const withoutFragment = hash < 0 ? rawPathWithQuery : rawPathWithQuery.slice(0, hash)
  const q = queryStart(withoutFragment)
  const query = withoutFragment.slice(q)
  const canonical = canonicalize(stripDotSegmentParameters(withoutFragment.slice(0, q)))
  if (canonical === null) {
    return {
      ok: false,
      status: 400,
      reason: `path ${JSON.stringify(rawPathWithQuery)} cannot be normalized (it contains a NUL character, %00, or an invalid UTF-16 sequence)`,
    }
  }
  const pathOnly = options.mergeSlashes === true ? mergeSlashes(canonical) : canonical
  return { ok: true, path: pathOnly + query, pathOnly }
}

function queryStart(path: string): number {
  const q = path.indexOf('?')
  return q < 0 ? path.length : q
}
