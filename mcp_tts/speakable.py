"""Speakable text: what an agent writes for a screen, turned into what a person should hear.

Each step is a pure function from text to text that can be used and tested alone; `speakable` runs
them all, in the order that keeps one step from spoiling another's input: markdown's blocks first
(code blocks and tables become their summaries), and within a block the finished pieces (code spans,
links, URLs, paths) are held aside while the prose around them is worked on.

Markdown is parsed by markdown-it (CommonMark, GFM tables and strikethrough): its tokens give the
blocks, and each sentence's code spans, links, images, autolinks, emphasis and HTML. Regular
expressions remain for what CommonMark does not say or says otherwise than agents mean: a line that
goes on the sentence before it, bullets it leaves inside a paragraph ("3." or "•" after a line of
text), task boxes and GitHub's alerts (extensions), a reference link with no definition, a table
row with no pipe (GFM takes the next sentence as a row), a fence closed outside the quote it opened
in, HTML comments across lines, and the tags inside an HTML token (markdown-it keeps HTML raw).

Conventions, chosen for how speech engines read, not for how text looks:

- Markdown becomes prose. A heading, a list item and a paragraph each become a sentence of their
  own, with a period added where none ends it; a hard-wrapped line that goes on in lowercase joins
  the line before. Emphasis, strikethrough and HTML tags go and their text stays; a link is read as
  its text; an image as "an image: <alt>"; quote marks and rules go; a task box is read
  ("- [x] tests" -> "Done: tests."). The numbers of an ordered list are dropped: the order is heard.
- A fenced code block becomes "A code block in Python, 12 lines." ("A code block, 3 lines." without
  a known language, "A diff, 4 lines." for a diff), a table "A table with 3 rows.", each a
  paragraph of its own. A code span is read as its content (`--dry-run` -> "dry run"), or as
  "a code snippet" when it is mostly symbols (a regex, a glob).
- A path is read as its meaningful tail: the file name, split into words, every dot read as "dot"
  ("src/utils/parse_config.py" -> "parse config dot py"). When the name says nothing alone
  (__init__.py, index.ts, main.go, mod.rs, page.tsx, src/ ...) its folder follows ("init dot py
  in mcp tts"). A line reference is read after it ("speech.py:42" -> "speech dot py line 42").
  Bare file names count when their extension is a known one (README.md, package.json, .env).
- A URL is read as its host after "a link to", dots spoken: "a link to github dot com". Engines
  differ on "github.com" (some spell it, some run it together) and none mishears "dot". GitHub and
  GitLab links say what they are: "pull request 123 on github dot com", "issue 7 on ...",
  "speech dot py line 42 on ...", "the mcp tts repository on ...". After "to", "at", "on" and the
  like, and for a bare domain, the host is said alone ("deployed to myapp dot fly dot dev").
- Identifiers are split into words: snake_case, SCREAMING_SNAKE (lowercased, known acronyms kept),
  camelCase and PascalCase (acronyms kept: parseHTTPResponse -> "parse HTTP response"), dotted
  names (os.path.join() -> "os path join"). kebab-case is split inside code spans, and in prose
  only with three or more parts and no English linking word, so "well-known" and "end-to-end" stay.
  Well-known mixed-case names (GitHub, JavaScript, macOS) stay as they are.
- A version is read with "point": v2.3.1 -> "version 2 point 3 point 1", Python 3.11 -> "Python 3
  point 11". Engines read a bare "2.3.1" as a date, a decimal or digit by digit, and people say
  "two point three point one". A decimal stays a decimal (1.5GB -> "1.5 gigabytes"); an IPv4
  address is read with "dot"; an ISO date as "January 15, 2024".
- Units, counts and abbreviations are written out: 42ms -> "42 milliseconds", 3x -> "3 times",
  10k -> "10 thousand", ~200 -> "about 200", #123 -> "number 123", 3-5 -> "3 to 5", 3/5 -> "3 of 5",
  e.g. -> "for example", -> -> "to", & -> "and". Acronyms engines already spell (API, CLI, JSON) stay.
- Emoji go, with their joiners, variation selectors, skin tones and :shortcodes:.

Chatterbox Turbo's tags ("[laugh]", "[sigh]", engines/contract/tags.py) are kept as written, lowercased.

The result never holds a markdown symbol (# * _ ` > | ~ < [ ] { } \\ nor a run of - or =), but for
those tags. An
input with nothing speakable in it (only emoji, only a rule) becomes "": the caller decides what to
do then. A code block or a table alone still speaks its summary. No step raises on any string.
Sentences are not split here.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from collections.abc import Callable
from contextvars import ContextVar

from markdown_it import MarkdownIt
from markdown_it.token import Token

from .engines.contract.tags import KNOWN_TAG

__all__ = [
    "speakable", "summarize_code_blocks", "summarize_tables", "markdown_to_prose", "strip_inline_markdown",
    "strip_html", "speak_urls", "speak_url", "speak_paths", "speak_path", "split_identifiers",
    "speak_abbreviations", "speak_numbers", "speak_symbols", "drop_emoji",
]

# ---------------------------------------------------------------------------------------------- words

LANGUAGES = {
    **dict.fromkeys(["python", "py", "py3", "python3", "pyi", "ipython", "pycon", "pyw"], "Python"),
    **dict.fromkeys(["typescript", "ts", "tsx", "mts", "cts"], "TypeScript"),
    **dict.fromkeys(["javascript", "js", "jsx", "mjs", "cjs", "node"], "JavaScript"),
    **dict.fromkeys(["sh", "bash", "shell", "zsh", "fish", "ksh", "console", "terminal", "shellsession",
                     "shell-session"], "shell"),
    **dict.fromkeys(["powershell", "ps1", "pwsh", "ps"], "PowerShell"),
    **dict.fromkeys(["bat", "cmd", "batch"], "batch"),
    **dict.fromkeys(["rust", "rs"], "Rust"),
    **dict.fromkeys(["go", "golang"], "Go"),
    **dict.fromkeys(["ruby", "rb"], "Ruby"),
    **dict.fromkeys(["kotlin", "kt", "kts"], "Kotlin"),
    **dict.fromkeys(["c", "h"], "C"),
    **dict.fromkeys(["cpp", "c++", "cc", "cxx", "hpp", "hh", "hxx"], "C plus plus"),
    **dict.fromkeys(["csharp", "cs", "c#"], "C sharp"),
    **dict.fromkeys(["fsharp", "fs", "f#"], "F sharp"),
    **dict.fromkeys(["objective-c", "objc", "objectivec"], "Objective C"),
    **dict.fromkeys(["json", "jsonc", "json5", "jsonl", "ndjson"], "JSON"),
    **dict.fromkeys(["yaml", "yml"], "YAML"),
    **dict.fromkeys(["html", "htm", "xhtml"], "HTML"),
    **dict.fromkeys(["sql", "psql", "mysql", "sqlite", "plpgsql", "postgresql", "tsql"], "SQL"),
    **dict.fromkeys(["markdown", "md", "mdx"], "Markdown"),
    **dict.fromkeys(["dockerfile", "docker"], "Dockerfile"),
    **dict.fromkeys(["makefile", "make", "mk"], "Makefile"),
    **dict.fromkeys(["haskell", "hs"], "Haskell"),
    **dict.fromkeys(["elixir", "ex", "exs"], "Elixir"),
    **dict.fromkeys(["erlang", "erl"], "Erlang"),
    **dict.fromkeys(["clojure", "clj", "cljs"], "Clojure"),
    **dict.fromkeys(["julia", "jl"], "Julia"),
    **dict.fromkeys(["perl", "pl"], "Perl"),
    **dict.fromkeys(["graphql", "gql"], "GraphQL"),
    **dict.fromkeys(["proto", "protobuf"], "Protocol Buffers"),
    **dict.fromkeys(["hcl", "terraform", "tf"], "Terraform"),
    **dict.fromkeys(["vim", "viml", "vimscript"], "Vim script"),
    **dict.fromkeys(["asm", "nasm", "assembly", "s"], "assembly"),
    **dict.fromkeys(["latex", "tex"], "LaTeX"),
    **dict.fromkeys(["scss", "sass"], "Sass"),
    **dict.fromkeys(["diff", "patch", "udiff"], "diff"),
    "java": "Java", "swift": "Swift", "php": "PHP", "toml": "TOML", "ini": "INI", "xml": "XML", "css": "CSS",
    "less": "Less", "lua": "Lua", "dart": "Dart", "scala": "Scala", "r": "R", "zig": "Zig", "nim": "Nim",
    "vue": "Vue", "svelte": "Svelte", "groovy": "Groovy", "gradle": "Gradle", "cmake": "CMake", "nix": "Nix",
    "prisma": "Prisma", "solidity": "Solidity", "sol": "Solidity", "mermaid": "Mermaid", "csv": "CSV",
    "nginx": "nginx config", "regex": "regular expression", "jinja": "Jinja", "wgsl": "WGSL", "glsl": "GLSL",
    "cuda": "CUDA", "cu": "CUDA", "ocaml": "OCaml", "ml": "OCaml", "elm": "Elm", "crystal": "Crystal",
}

# Extensions that make a bare word a file name ("README.md"); every language one above counts too.
FILE_EXTENSIONS = {
    "py", "pyi", "pyx", "ipynb", "js", "jsx", "mjs", "cjs", "ts", "tsx", "mts", "cts", "json", "jsonc", "jsonl",
    "md", "mdx", "rst", "txt", "rs", "go", "java", "kt", "kts", "rb", "php", "c", "h", "cc", "cpp", "cxx", "hpp",
    "cs", "fs", "swift", "sh", "bash", "zsh", "fish", "ps1", "bat", "cmd", "yml", "yaml", "toml", "ini", "cfg",
    "conf", "env", "lock", "csv", "tsv", "html", "htm", "css", "scss", "sass", "less", "vue", "svelte", "sql",
    "xml", "svg", "png", "jpg", "jpeg", "gif", "webp", "ico", "pdf", "wav", "mp3", "flac", "ogg", "mp4", "log",
    "proto", "graphql", "gql", "tf", "tfvars", "lua", "dart", "ex", "exs", "erl", "hs", "scala", "clj", "jl",
    "zig", "nim", "vim", "el", "gradle", "properties", "pem", "crt", "gz", "tgz", "zip", "tar", "whl", "so",
    "dll", "dylib", "exe", "bin", "pt", "pth", "safetensors", "onnx", "gguf", "npz", "npy", "pkl", "parquet",
    "db", "sqlite", "wasm", "map", "d", "mk", "cmake", "nix", "prisma", "sol", "ejs", "hbs", "j2", "tmpl",
    "plist", "xcconfig", "sbt", "pom", "editorconfig", "gitignore", "dockerignore", "patch", "diff",
}

# A file or folder with one of these names is named with its folder: "init dot py in mcp tts".
GENERIC_FILES = {
    "__init__", "__main__", "index", "main", "mod", "lib", "page", "layout", "route", "routes", "default",
    "+page", "+layout", "+server", "types", "utils", "helpers", "config", "settings", "conftest", "constants",
}
GENERIC_FOLDERS = {"src", "lib", "bin", "dist", "build", "out", "test", "tests", "docs", "scripts", "pkg", "cmd",
                   "internal", "source", "sources"}

# Folders that make "a/b" a path in prose, where "and/or" is not one.
COMMON_DIRS = {
    "src", "lib", "app", "apps", "packages", "crates", "cmd", "internal", "pkg", "tests", "test", "spec", "docs",
    "scripts", "bin", "dist", "build", "public", "assets", "components", "pages", "utils", "config", "vendor",
    "examples", "tools", "server", "client", "web", "frontend", "backend", "include", "node_modules", "engines",
    "static", "templates", "migrations", "fixtures", "benchmarks", "bench", "hooks", "styles", "routes", "api",
}

# Upper-case words an engine reads well as letters; other upper-case words of a SCREAMING_NAME are lowercased.
ACRONYMS = {
    "API", "CLI", "HTTP", "HTTPS", "URL", "URI", "JSON", "YAML", "TOML", "XML", "HTML", "CSS", "SQL", "DB", "ID",
    "UI", "UX", "IO", "OS", "CPU", "GPU", "TPU", "RAM", "SSD", "TTS", "STT", "MCP", "LLM", "AI", "ML", "SDK", "JWT",
    "SSH", "SSL", "TLS", "TCP", "UDP", "IP", "DNS", "AWS", "GCP", "CI", "CD", "PR", "MR", "QA", "UTF", "PDF", "CSV",
    "PNG", "JPG", "SVG", "GIF", "WAV", "NPM", "JS", "TS", "VM", "XSS", "CSRF", "RPC", "CDN", "ORM", "JVM", "GC",
    "IAM", "MFA", "OTP", "SMTP", "FTP", "SSO", "VPN", "USB", "GUI", "IDE", "PID", "UID", "GID", "TTL", "FAQ", "ABI",
    "FFI", "AST", "DOM", "CSP", "SSR", "SPA", "PWA", "RSS", "PHP", "QR", "EOF", "CRLF", "LF", "KV", "RGB", "MD",
}

# Mixed-case names that are words, not identifiers to split.
BRANDS = {
    "GitHub", "GitLab", "JavaScript", "TypeScript", "CoffeeScript", "PyTorch", "TensorFlow", "OpenAI", "YouTube",
    "LinkedIn", "PowerShell", "PostgreSQL", "MySQL", "NoSQL", "SQLite", "GraphQL", "WebSocket", "WebSockets",
    "WebAssembly", "WebGPU", "WebGL", "macOS", "iOS", "iPadOS", "watchOS", "tvOS", "iPhone", "iPad", "iCloud",
    "MacBook", "DevOps", "ChatGPT", "FastAPI", "NumPy", "SciPy", "PyPI", "PyPy", "CodeQL", "VSCode", "HuggingFace",
    "LangChain", "WordPress", "MongoDB", "DynamoDB", "LaTeX", "PhD", "ESLint", "OAuth", "DeepSeek", "DeepMind",
    "IntelliJ", "PyCharm", "JetBrains", "CircleCI", "DigitalOcean", "ClickHouse", "DuckDB", "RabbitMQ", "PayPal",
    "WhatsApp", "TikTok", "McDonald", "SvelteKit", "NextAuth", "TailwindCSS", "PostCSS", "CUDA", "CMake",
}

# Words that keep an English hyphenated phrase ("up-to-date") from being read as a kebab-case name.
LINKING_WORDS = {
    "to", "of", "the", "a", "an", "in", "on", "at", "by", "for", "and", "or", "with", "from", "up", "out", "off",
    "over", "under", "after", "before", "as", "per", "is", "be", "it", "all", "one", "two", "self", "non", "so",
}

VERSIONED_NAMES = (
    "version|Version|Python|python|Node|node|Go|Rust|Ruby|Java|PHP|Perl|Django|Flask|FastAPI|React|Vue|Angular|"
    "TypeScript|Ubuntu|Debian|Fedora|macOS|iOS|Android|Postgres|PostgreSQL|MySQL|Redis|Kubernetes|Docker|CUDA|"
    "PyTorch|torch|NumPy|numpy|pytest|pip|npm|pnpm|yarn|GCC|gcc|Clang|clang|LLVM|Swift|Kotlin|Scala|Elixir|Lua|"
    "Dart|Flutter|Electron|Deno|Bun|Rails|Laravel|Spring|JDK|Gradle|Terraform|Chrome|Firefox|Windows|Linux|"
    "Qwen|Claude|Gemini|Llama|Mistral|GPT|Sonnet|Opus|Haiku|uv|Poetry|Vite|webpack|Next|Nuxt|Svelte|ESLint"
)

UNITS = {
    "ms": ("millisecond", "milliseconds"), "ns": ("nanosecond", "nanoseconds"),
    "µs": ("microsecond", "microseconds"), "μs": ("microsecond", "microseconds"), "us": ("microsecond", "microseconds"),
    "s": ("second", "seconds"), "sec": ("second", "seconds"), "secs": ("second", "seconds"),
    "m": ("minute", "minutes"), "min": ("minute", "minutes"), "mins": ("minute", "minutes"),
    "h": ("hour", "hours"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"), "d": ("day", "days"),
    "B": ("billion", "billion"), "k": ("thousand", "thousand"), "K": ("thousand", "thousand"),
    "M": ("million", "million"), "x": ("time", "times"), "×": ("time", "times"),
    "KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"), "PB": ("petabyte", "petabytes"),
    "KiB": ("kibibyte", "kibibytes"), "MiB": ("mebibyte", "mebibytes"), "GiB": ("gibibyte", "gibibytes"),
    "TiB": ("tebibyte", "tebibytes"), "PiB": ("pebibyte", "pebibytes"), "Kb": ("kilobit", "kilobits"),
    "Mb": ("megabit", "megabits"), "Gb": ("gigabit", "gigabits"), "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz"), "px": ("pixel", "pixels"),
    "fps": ("frame per second", "frames per second"), "LOC": ("line of code", "lines of code"),
    "tok/s": ("token per second", "tokens per second"), "tokens/s": ("token per second", "tokens per second"),
    "req/s": ("request per second", "requests per second"), "it/s": ("iteration per second", "iterations per second"),
    "ops/s": ("operation per second", "operations per second"), "KB/s": ("kilobyte per second", "kilobytes per second"),
    "MB/s": ("megabyte per second", "megabytes per second"), "GB/s": ("gigabyte per second", "gigabytes per second"),
}

ABBREVIATIONS = [  # (what the lowercased text must hold, pattern, spoken), applied in this order
    ("e.g.", r"\b[Ee]\.g\.(?=[\s,;:)]|$)", "for example"), ("i.e.", r"\b[Ii]\.e\.(?=[\s,;:)]|$)", "that is"),
    ("etc", r"\betc\.(?=\s*$|\s+[A-Z])", "et cetera."), ("etc", r"\betc\b\.?", "et cetera"),
    ("vs", r"\b[Vv]s\b\.?", "versus"), ("w/o", r"(?<![\w/])w/o(?![\w/])", "without"),
    ("w/", r"(?<![\w/])w/(?=\s)", "with"), ("approx", r"\b[Aa]pprox\b\.?", "approximately"),
    ("n/a", r"\bN/A\b", "not applicable"), ("cf.", r"\bcf\.", "compare"),
    ("tl", r"\b(?:TL;DR|tl;dr|TLDR|tldr)\b:?", "in short:"), ("ak", r"\b(?:a\.k\.a\.|aka)(?=\s)", "also known as"),
    ("w.r.t.", r"\bw\.r\.t\.", "with respect to"), ("todo", r"\bTODOs\b", "to dos"), ("todo", r"\bTODO\b", "to do"),
    ("fixme", r"\bFIXME\b", "fix me"), ("wip", r"\bWIP\b", "work in progress"),
    ("lgtm", r"\bLGTM\b", "looks good to me"), ("readme", r"\b(?:README|Readme)\b", "readme"),
    ("iirc", r"\bIIRC\b", "if I remember correctly"), ("afaik", r"\bAFAIK\b", "as far as I know"),
    ("imo", r"\bIMO\b", "in my opinion"), ("btw", r"\b(?:BTW|btw)\b", "by the way"),
    ("k8s", r"\bk8s\b", "Kubernetes"), ("i18n", r"\bi18n\b", "internationalization"),
    ("l10n", r"\bl10n\b", "localization"), ("a11y", r"\ba11y\b", "accessibility"),
    ("e2e", r"\b[eE]2[eE]\b", "end to end"), ("stdout", r"\bstdout\b", "standard out"),
    ("stderr", r"\bstderr\b", "standard error"), ("stdin", r"\bstdin\b", "standard in"),
    ("stdlib", r"\bstdlib\b", "standard library"), ("c#", r"\bC#(?!\w)", "C sharp"), ("f#", r"\bF#(?!\w)", "F sharp"),
    ("c++", r"\bC\+\+(?![\w+])", "C plus plus"), (".net", r"(?<![\w.])\.NET\b", "dot net"),
]

PRERELEASES = {"rc": "release candidate", "a": "alpha", "b": "beta", "pre": "pre-release"}
NUMBERED_LINKS = {"pull": "pull request", "pulls": "pull request", "issues": "issue", "merge_requests": "merge request",
                  "discussions": "discussion"}

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]

HTML_TAGS = (
    "a|abbr|article|aside|audio|b|big|blockquote|br|button|center|cite|code|col|colgroup|dd|del|details|dfn|div|"
    "dl|dt|em|figcaption|figure|font|footer|form|h[1-6]|header|hr|i|iframe|img|input|ins|kbd|label|li|link|mark|"
    "meta|nav|ol|p|picture|pre|q|s|samp|script|section|small|source|span|strike|strong|style|sub|summary|sup|"
    "table|tbody|td|tfoot|th|thead|tr|tt|u|ul|var|video|wbr"
)
HTML_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'", "&apos;": "'", "&nbsp;": " ",
                 "&mdash;": "—", "&ndash;": "–", "&hellip;": "…", "&rarr;": "→", "&larr;": "←", "&copy;": "©"}

# -------------------------------------------------------------------------------------------- patterns

_NEWLINES = re.compile(r"\r\n?|[\x85\u2028\u2029]")
_ODD_SPACE = re.compile("[\t\x0b\x0c\x1c-\x1f\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_UNSPEAKABLE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff\U000f0000-\U0010ffff]")

_ATOM_BASE = 0xF0000
_ATOM_LIMIT = 0xFFFD
_ATOM = re.compile("[\U000f0000-\U000ffffd]")
_TAG_BASE = 0x100000  # Turbo's tags, held for the whole pipeline (plane 16, apart from the atoms')
_TAG_HELD = re.compile("[\U00100000-\U0010fffd]")

_CURSOR_CITATION = re.compile(r"\d+:\d+:(\S+)")
_INFO_WORD = re.compile(r"[^\s{},:=`]*")

# Markdown's structure is markdown-it's (CommonMark, with GFM tables and strikethrough; HTML recognised so
# that it can be dropped). Indented code is off: agents indent tracebacks and wrapped lines, which are read
# here as prose. The block parser leaves inline content alone: each sentence's is parsed once, by _INLINE,
# with the reference definitions of its document (_REFERENCES).
_BLOCKS = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).disable(["code", "inline"])
_INLINE = MarkdownIt("commonmark", {"html": True}).enable(["strikethrough"])
_REFERENCES: ContextVar[dict] = ContextVar("references")
_BLOCK_START = re.compile(r"\s*(?:[#>*+\-=_|`~<\[•‣◦▪●]|\d+[.)])")  # what a line that opens a block starts with
_INLINE_MARKUP = re.compile(r"[`\[!<*_~&\\]")  # what inline markdown starts with: text without one is left alone

_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BULLET = re.compile(r"(?:[-*+•‣◦▪●]|\d{1,3}[.)])[ \t]+(.*)")
_TASK = re.compile(r"\[([ xX✓✔])\][ \t]*(.*)")
_ALERT = re.compile(r"\[!(NOTE|TIP|IMPORTANT|WARNING|CAUTION)\]", re.I)
_REF_DEFINITION = re.compile(r"\[[^\]]+\]:[ \t]+\S+.*")
_DASH_START = re.compile(r"^[-–—]\s+")
_SENTENCE_END = re.compile(r"[.!?:…][\"'”’)\]»]*$")

_REF_LINK = re.compile(r"\[([^\[\]\n]+)\]\[[^\[\]\n]*\]")
_HTML_TAG = re.compile(rf"</?(?:{HTML_TAGS})\b(?:[^<>\"']|\"[^\"]*\"|'[^']*')*/?>", re.I)
_HTML_BLOCK = re.compile(r"<(?:br|hr|/(?:p|div|li|tr|summary|details|h[1-6]|blockquote|pre|table|ul|ol))\b", re.I)
_ENTITY = re.compile("|".join(map(re.escape, HTML_ENTITIES)))

_URL = re.compile(r"(?:\b(?:https?|ftp|file|wss?|ssh|git)://|\bwww\.)[^\s<>\"'`|\\^{}]+", re.I)
_URL_TRAILER = ".,;:!?'\")]}*_~"
_PLACE_BEFORE = re.compile(r"\b(?:to|at|on|from|in|into|onto|via|under)\s+$", re.I)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w@.])")
_TLDS = "com|org|net|io|dev|ai|app|co|edu|gov|info|xyz|cloud|sh|uk|de|fr|jp|ca|au|eu|nl|tech"
_DOMAIN = re.compile(
    rf"(?<![\w@./-])((?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+(?:{_TLDS}))(?::(\d{{1,5}}))?"
    r"(?![\w-]|\.[A-Za-z])(/[^\s<>\"'`|\\^{}]*)?")
_LOCAL_HOST = re.compile(r"(?<![\w./])(localhost|0\.0\.0\.0|127\.0\.0\.1):(\d{1,5})\b")

_SEGMENT = r"[\w@+.-]*[\w@+-]"
_PATH = re.compile(
    r"(?<![\w/\\.:~@$-])(?=[\w@+.~:-]*[./\\])"
    rf"(?P<path>(?:[A-Za-z]:[\\/]|~[\\/]|\.{{1,2}}[\\/]|[\\/])?{_SEGMENT}(?:[\\/]{_SEGMENT})*[\\/]?)"
    r"(?::(?P<line>\d+)(?:(?P<sep>[-:])(?P<to>\d+))?(?![\d:])|#L(?P<hline>\d+)(?:-L?(?P<hto>\d+))?)?"
    r"(?![\w(])")
_DOTFILE = re.compile(r"\.[a-z][\w.-]*")
_DRIVE = re.compile(r"[A-Za-z]:")

_IDENTIFIER = re.compile(
    r"(?<![\w.@$/\\])(?=[\w$.]*(?:[_$.]|\(\)|[a-z0-9][A-Z]|[A-Z][A-Z][a-z]))"  # only names that need splitting
    r"\$?[A-Za-z_][\w$]*(?:\.[A-Za-z_$][\w$]*)*(?:\(\))?(?![\w$])")
_CAMEL_WORD = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+\d*|[A-Z]+\d*|\d+")
_HUMP = re.compile(r"[a-z0-9][A-Z]|[A-Z][A-Z][a-z]")
_NAME_SPLIT = re.compile(r"[_\-.$@+\s]+")
_PROSE_KEBAB = re.compile(r"(?<![\w-])[a-z][a-z0-9]*(?:-[a-z0-9]+){2,}(?![\w-])")
_CODE_FLAG = re.compile(r"(?<![\w-])--?(?=[A-Za-z])")
_CODE_HYPHEN = re.compile(r"(?<=[A-Za-z0-9])-(?=[A-Za-z])")
_CODE_REFERENCE = re.compile(r"(?<![\w&])&(?=[\w(\[])")  # Rust's &str, C's &x: not "and"
_CODE_COMPARISON = re.compile(r"\s+([<>]=?|\|)\s+")
_CODE_COMPARISONS = {"<": " less than ", ">": " greater than ", "<=": " less than or equal to ",
                     ">=": " greater than or equal to ", "|": " or "}
_CODE_DANGLING = re.compile(r"(?<=\w)-+(?!\w)")
_CODE_ASSIGNMENT = re.compile(r"\s*(?<![=!<>:+*/-])=(?![=>])\s*")
_CODE_DOT = re.compile(r"(?<!\w)\.+|\.+(?!\w)")

_ABBREVIATIONS = [(trigger, re.compile(pattern), spoken) for trigger, pattern, spoken in ABBREVIATIONS]
_STARTS_SENTENCE = re.compile(r"(?:^|[.!?]\s+)$")

_PRERELEASE = r"(?P<pre>[-.]?(?:alpha|beta|rc|dev|pre|preview|canary|nightly|post|[ab](?=\d))\.?\d*)?"
_DIGIT = re.compile(r"\d")
_DIGIT_UNDERSCORE = re.compile(r"(?<=\d)_(?=\d)")
_ISO_DATE = re.compile(r"(?<![\w.-])(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(?![\w-])")
_IP_ADDRESS = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?(?!\w|\.\d)")
_V_VERSION = re.compile(rf"(?<![\w.])[vV](?P<version>\d+(?:\.\d+)*){_PRERELEASE}(?!\w|\.\d)")
_NAMED_VERSION = re.compile(
    rf"\b(?P<name>{VERSIONED_NAMES})(?P<sep>[ :-]v?)(?P<version>\d+(?:\.\d+)+){_PRERELEASE}(?!\w|\.\d)")
_PACKAGE_VERSION = re.compile(r"(?<=[A-Za-z0-9])@(?=v?\d)")  # vite@5.2.0
_WILDCARD_VERSION = re.compile(r"(?<![\w.])(\d+(?:\.\d+)*)\.[x*](?![\w*])")  # 18.x
_BARE_VERSION = re.compile(rf"(?<![\w.])(?P<version>\d+\.\d+\.\d+){_PRERELEASE}(?!\w|\.\d)")
_PRERELEASE_PARTS = re.compile(r"[-.]?([a-z]+)\.?(\d*)")
_VERSION_BEFORE = re.compile(r"\bversions?(?:\s+(?:to|from|is|of|at))?\s*$", re.I)
_ABOUT = re.compile(r"[~≈]\s?(?=\d)")
_NUMBER_SIGN = re.compile(r"(?<![\w&#/])#(\d+)(?!\w)")
_DOLLARS = re.compile(r"(?<![\w$])\$(\d+(?:[.,]\d+)*)(?!\w)")
_PERCENT = re.compile(r"(?<=\d)\s?%")
_UNIT = re.compile(
    r"(?<![\w.,])(?P<number>\d+(?:[.,]\d+)*)"
    r"(?:[ ]?(?P<long>(?:tok|tokens|req|it|ops|KB|MB|GB)/s|ms|ns|µs|μs|secs?|mins?|hrs?|[KMGTP]i?B|kB|[KMG]b|"
    r"[kMG]?Hz|px|fps|LOC)|(?P<short>us|s|m|h|d|x|×|k|K|M|B))"
    r"(?![\w/])")
_RATE = re.compile(r"\b(req|reqs|tok|toks|ops|it)/s\b")
_RATE_WORDS = {"req": "requests", "reqs": "requests", "tok": "tokens", "toks": "tokens", "ops": "operations",
               "it": "iterations"}
_PER = re.compile(r"(?<=[A-Za-z])/(s|sec|min|h|hr|day)\b")
_PER_WORDS = {"s": "second", "sec": "second", "min": "minute", "h": "hour", "hr": "hour", "day": "day"}
_RANGE = re.compile(r"(?<![\w.:/-])(\d+(?:\.\d+)?)[-–](?!0\d)(\d+(?:\.\d+)?)(?![\w:/]|[-–.]\d)")
_DURATION = re.compile(r"(?<![\w.])(?=\d+[hm]\d)(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?!\w)")
_FRACTION = re.compile(r"(?<![\w./])(\d+)/(\d+)(?![\w/]|\.\d)")

_ARROW = re.compile(r"\s*(?:-{1,2}>|={1,2}>|[→⟶➜➡⇒⟹])\s*")
_SYMBOLS = [(frozenset(characters), re.compile(pattern), spoken) for characters, pattern, spoken in [
    # (characters without which the pattern cannot match, pattern, spoken)
    ("≥>", r"\s*(?:>=|≥)\s*", " at least "), ("≤<", r"\s*(?:<=|≤)\s*", " at most "),
    ("≠!", r"\s*(?:!==?|≠)\s*", " is not "), ("=", r"\s+={2,3}\s+", " equals "),
    (">", r">\s?(?=\d)", "more than "), ("<", r"<\s?(?=\d)", "less than "),
    (">", r"\s+>\s+", ", "), ("<", r"\s+<\s+", " less than "),
    ("&", r"\s*&&\s*", " and "), ("|", r"\s*\|\|\s*", " or "),
    ("&", r"\s*&\s*", " and "), ("±", r"\s*±\s*", " plus or minus "),
    ("↑", r"\s*↑\s*", " up "), ("↓", r"\s*↓\s*", " down "),
    ("•·", r"\s+[•·]\s+", ", "), ("x×", r"(?<![\w.])([1-9]\d*)[x×](\d+)(?!\w)", r"\1 by \2"),
    ("/", r"(?<=[^\W\d_])/(?=[^\W\d_])", " "),
]]
_ARROW_CHARACTERS = frozenset(">→⟶➜➡⇒⟹")
_GENERIC_TYPE = re.compile(r"(?<=\w)<([\w ,]+)>")

_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff\u2190-\u21ff\u25a0-\u25ff\u2500-\u259f"
    "\ufe00-\ufe0f\u200b-\u200d\u2060\ufeff\u20e3\U000e0000-\U000e007f\u3030\u303d\u3297\u3299\u203c\u2049"
    "\u2139\u24c2\u2122\u2934\u2935\u2022]")
_SHORTCODE = re.compile(r"(?<!\S):[a-z0-9_+-]{2,}:(?!\S)")

_LEFTOVER = re.compile(r"[#*_`>|~<\[\]{}\\^]+|-{2,}|={2,}")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)")
_OPEN_SPACE = re.compile(r"\(\s+")
_SPACE_BEFORE = re.compile(r"\s+([.,;:!?)]+)(?![\w(])")
_REPEATED = re.compile(r"([,;:])(?:\s*[,;:])+|[,;:]+\s*([.!?])|\.(?:\s+\.)+(?!\.)")
_LEADING = re.compile(r"^[\s,.;:!?)]+")
_SPACES = re.compile(r"\s+")


# ------------------------------------------------------------------------------------------ the whole


def speakable(text: str) -> str:
    """What a person should hear for an agent's message: markdown, code, paths, links, identifiers,
    numbers and emoji made speakable; "" when nothing speakable is left."""
    text = _clean(text)
    tags: list[str] = []
    if "[" in text:  # Turbo's sound and style tags stay as written, out of every step's reach
        def hold(match: re.Match) -> str:
            tags.append(match.group(0).lower())
            return f" {chr(_TAG_BASE + len(tags) - 1)} "
        text = KNOWN_TAG.sub(hold, text)
    text = markdown_to_prose(text, inline=_speak_prose)  # code blocks and tables become their summaries
    if tags:
        text = _TAG_HELD.sub(lambda m: tags[ord(m.group(0)) - _TAG_BASE], text)
        text = _SPACES.sub(" ", text).strip()
    return text


def _clean(text: str) -> str:
    text = _NEWLINES.sub("\n", text)
    text = _ODD_SPACE.sub(" ", text)
    text = _UNSPEAKABLE.sub("", text)  # control characters, lone surrogates, and the private use held for atoms
    return unicodedata.normalize("NFC", text)


class _Atoms:
    """Finished pieces of a block, each held out of reach of the later steps as one private-use character.
    One store serves a block and every piece nested in it (a code span in a link's text), so that a
    character always names the piece it was given for."""

    def __init__(self) -> None:
        self.spoken: list[str] = []

    def keep(self, spoken: str) -> str:
        if len(self.spoken) >= _ATOM_LIMIT:
            return spoken
        self.spoken.append(spoken)
        return chr(_ATOM_BASE + len(self.spoken) - 1)

    def restore(self, text: str) -> str:
        for _ in range(8):  # a kept piece may hold pieces kept before it
            if not self.spoken or not _ATOM.search(text):
                break
            text = _ATOM.sub(lambda m: self._at(ord(m.group()) - _ATOM_BASE), text)
        return text

    def _at(self, index: int) -> str:
        return self.spoken[index] if index < len(self.spoken) else ""


def _speak_prose(text: str) -> str:
    """One sentence's inline markdown made speakable: code spans, links, images and autolinks are
    spoken and kept aside, then the prose around them is worked on."""
    atoms = _Atoms()

    def link(label: str, href: str) -> str:
        spoken = _speak(label, False, atoms)
        if not spoken.strip(" .,;:!?") and href and not href.startswith("#"):
            spoken = _speak(href, True, atoms)
        return atoms.keep(spoken)

    text = _render_inline(
        text, code=lambda content: atoms.keep(_speak_code(content)), link=link,
        image=lambda alt: atoms.keep(_image(_speak(alt, False, atoms))),
        address=lambda address: atoms.keep(_speak_address(address)))
    return _speak(text, False, atoms, outermost=True)


def _speak(text: str, code: bool, atoms: _Atoms, outermost: bool = False) -> str:
    """Text free of markdown (a block's, once its inline markdown is rendered, or a code span's content,
    when code) made speakable. Its kept pieces are restored only by the outermost call."""
    text = _sub_urls(text, atoms.keep)
    text = _sub_paths(text, atoms.keep, code)
    text = speak_abbreviations(text)
    text = speak_numbers(text)
    if code:
        text = _CODE_FLAG.sub("", text)
        text = _CODE_REFERENCE.sub("", text)
        text = _CODE_COMPARISON.sub(lambda m: _CODE_COMPARISONS[m.group(1)], text)
    text = split_identifiers(text, kebab=code)
    text = speak_symbols(text)
    if code:
        text = _CODE_ASSIGNMENT.sub(" equals ", text)
        text = _CODE_DOT.sub(" ", text)
        text = _CODE_DANGLING.sub("", text)
    if not text.isascii():
        text = drop_emoji(text)
    return _tidy(atoms.restore(text) if outermost else text)


def _speak_code(code: str) -> str:
    """A code span's content; "a code snippet" when it is mostly symbols (a regex, a glob, an expression)."""
    visible = [char for char in code if not char.isspace()]
    if len(visible) >= 5 and sum(char.isalnum() for char in visible) * 2 < len(visible):
        return "a code snippet"
    return _speak(code, True, _Atoms(), outermost=True)


def _tidy(text: str) -> str:
    text = _LEFTOVER.sub(" ", text)
    if "(" in text:
        text = _OPEN_SPACE.sub("(", _EMPTY_BRACKETS.sub(" ", text))
    text = _SPACES.sub(" ", text)
    text = _REPEATED.sub(lambda m: m.group(1) or m.group(2) or ".", text)
    text = _SPACE_BEFORE.sub(r"\1", text)
    return _LEADING.sub("", text).strip()


# ------------------------------------------------------------------------------------ blocks of text


def summarize_code_blocks(text: str) -> str:
    """Each fenced code block (``` or ~~~, closed or running to the end of its container) as a paragraph
    of its own: "A code block in Python, 12 lines." """
    if "```" not in text and "~~~" not in text:
        return text
    return _summarize(text, "fence")


def summarize_tables(text: str) -> str:
    """Each markdown table (a header row, a |---| rule, its rows) as a paragraph: "A table with 3 rows." """
    if "|" not in text:
        return text
    return _summarize(text, "table_open")


def _summarize(text: str, kind: str) -> str:
    """The text with the source lines of each block of `kind` replaced by its summary, set apart by
    empty lines (quoted, when the block was in a quote)."""
    lines = text.split("\n")
    tokens = _BLOCKS.parse(text)
    out: list[str] = []
    done = 0  # source lines copied so far
    quoted = 0
    for index, token in enumerate(tokens):
        quoted += token.type == "blockquote_open"
        quoted -= token.type == "blockquote_close"
        if token.type != kind or token.map is None or token.map[0] < done:
            continue
        start, end = token.map
        quote = ">" if quoted else ""
        if kind == "fence" and _closes_earlier_fence(tokens, index, lines):
            out += lines[done:start] + [summarize_code_blocks("\n".join(lines[start + 1:end]))]
        elif kind == "fence":
            out += lines[done:start] + [quote, quote + _code_summary(token.info, token.content), quote]
        else:
            summary, end = _table(tokens, index, lines)
            out += lines[done:start] + ["", summary, ""]
        done = end
    return "\n".join(out + lines[done:])


def _closes_earlier_fence(tokens: list[Token], index: int, source: list[str]) -> bool:
    """Whether the fence at `index` is a bare fence line that closes one opened in a quote or list item
    just before it ("> ```sh", "> npm test", "```"): CommonMark ends that one with its container and
    opens a new one here, which runs to the end and takes every line after it; an agent meant it closed."""
    fence, before = tokens[index], index - 1
    while before >= 0 and tokens[before].type.endswith("_close"):
        before -= 1
    opened = tokens[before] if before >= 0 and before < index - 1 else None
    if opened is None or opened.type != "fence" or not opened.map or not fence.map or fence.info.strip():
        return False
    if opened.map[1] != fence.map[0] or fence.markup[0] != opened.markup[0] or len(fence.markup) < len(opened.markup):
        return False
    last = source[opened.map[1] - 1].strip().lstrip("> \t-*+")
    closed = opened.map[1] - opened.map[0] >= 2 and last.startswith(opened.markup) and not last.strip(last[:1])
    return not closed


def _code_summary(info: str, content: str) -> str:
    body = content.split("\n")
    start, end = 0, len(body)
    while start < end and not body[start].strip():
        start += 1
    while end > start and not body[end - 1].strip():
        end -= 1
    count = end - start
    language = _code_language(info)
    if language == "diff":
        return "An empty diff." if count == 0 else f"A diff, {_lines(count)}."
    where = f" in {language}" if language else ""
    if count == 0:
        return f"An empty code block{where}."
    return f"A code block{where}, {_lines(count)}."


def _lines(count: int) -> str:
    return "1 line" if count == 1 else f"{count} lines"


def _code_language(info: str) -> str | None:
    info = info.strip().strip("{}").strip()
    citation = _CURSOR_CITATION.match(info)  # Cursor cites code as ```12:15:app/components/Todo.tsx
    word = citation.group(1) if citation else _INFO_WORD.match(info).group()
    word = word.lower().removeprefix("language-").lstrip(".")
    if word in LANGUAGES:
        return LANGUAGES[word]
    name = re.split(r"[\\/]", word)[-1]
    if "." in name:
        return LANGUAGES.get(name.rsplit(".", 1)[1])
    return None


def _table(tokens: list[Token], start: int, source: list[str]) -> tuple[str, int]:
    """A table's summary, and the source line its rows end at. GFM takes any line up to an empty one as
    a row; a line without a pipe ends the table here: agents follow a table with a sentence, no gap."""
    rows, body, end = 0, False, tokens[start].map[1] if tokens[start].map else len(source)
    for token in tokens[start:]:
        if token.type == "table_close":
            break
        body = (body or token.type == "tbody_open") and token.type != "tbody_close"
        if body and token.type == "tr_open" and token.map:
            if "|" not in source[token.map[0]]:
                end = token.map[0]
                break
            rows += 1
    return ("An empty table." if rows == 0 else f"A table with {rows} row{'s' * (rows != 1)}."), end


def markdown_to_prose(text: str, inline: Callable[[str], str] | None = None) -> str:
    """Markdown blocks as sentences, one paragraph per line: headings, list items and paragraphs each end
    with punctuation; quote marks, rules, list markers and reference definitions go; a code block or a
    table is its summary. Each sentence's inline markdown goes through inline (strip_inline_markdown
    unless given)."""
    inline = inline or strip_inline_markdown
    if "-->" in text:  # before the blocks are found: a comment may run across lines, or hide a fence
        text = _HTML_COMMENT.sub(" ", text)
    if "\n" not in text and not _BLOCK_START.match(text):  # one line of prose: no blocks to find
        out: list[str] = []
        _paragraph(out, [text], [text], inline, False)
        return "\n".join(out)
    env: dict = {}
    tokens = _BLOCKS.parse(text, env)
    source = text.split("\n")
    out = []
    token_references = _REFERENCES.set({**_REFERENCES.get({}), **env.get("references", {})})
    try:
        item = False  # the next paragraph opens a list item
        for index, token in enumerate(tokens):
            kind = token.type
            if kind == "list_item_open":
                item = True
            elif kind == "inline" and tokens[index - 1].type == "heading_open":  # a setext one may have lines
                _paragraph(out, token.content.split("\n"), source[token.map[0]:token.map[1]], inline, False)
            elif kind == "inline" and tokens[index - 1].type == "paragraph_open":
                _paragraph(out, token.content.split("\n"), source[token.map[0]:token.map[1]], inline, item)
                item = False
            elif kind == "html_block":
                _html_block(out, token.content, inline)
            elif kind == "fence" and _closes_earlier_fence(tokens, index, source):
                out += _prose_lines(source[token.map[0] + 1:token.map[1]], inline)  # the lines it took
            elif kind == "fence":
                _sentence(out, _code_summary(token.info, token.content), inline)
            elif kind == "table_open":
                summary, end = _table(tokens, index, source)
                _sentence(out, summary, inline)
                out += _prose_lines(source[end:token.map[1]], inline)  # lines GFM took for rows
    finally:
        _REFERENCES.reset(token_references)
    return "\n".join(out)


def _prose_lines(lines: list[str], inline: Callable[[str], str]) -> list[str]:
    """Source lines read as markdown of their own: what a block took that was not its own."""
    return [line for line in markdown_to_prose("\n".join(lines), inline).split("\n") if line] if lines else []


def _html_block(out: list[str], content: str, inline: Callable[[str], str]) -> None:
    """An HTML block (<details>, <div> ...) read as the markdown inside it: its tags dropped, a block
    tag ending a paragraph, a fence in it still a code block. Tags of no known name are left to the
    inline step, line by line."""
    text = _HTML_TAG.sub(lambda m: "\n\n" if _HTML_BLOCK.match(m.group()) else " ", content)
    if text != content:  # each pass drops a tag, so this ends
        out += _prose_lines(text.split("\n"), inline)
    else:
        lines = content.rstrip("\n").split("\n")
        _paragraph(out, lines, lines, inline, False)


def _paragraph(out: list[str], lines: list[str], raw_lines: list[str], inline: Callable[[str], str],
               item: bool) -> None:
    """A paragraph's lines as sentences: a hard-wrapped line that goes on in lowercase (or, in a list
    item, is indented) joins the line before; a bullet markdown left inside a paragraph ("3. ...",
    "• ...", which CommonMark lets no paragraph be broken by) starts an item; a task box is read."""
    block: list[str] = []
    for number, line in enumerate(lines):
        raw = raw_lines[number] if number < len(raw_lines) else line
        line = line.strip()
        if not line or _REF_DEFINITION.fullmatch(line):
            continue
        bullet = _BULLET.fullmatch(line)
        if bullet:
            line, item = bullet.group(1), True
        alert = _ALERT.fullmatch(line)
        if alert:
            _sentence(out, " ".join(block), inline)
            _sentence(out, f"{alert.group(1).capitalize()}:", inline)
            block = []
        elif item and (number == 0 or bullet):
            _sentence(out, " ".join(block), inline)
            task = _TASK.fullmatch(line)
            block = [("To do: " if task.group(1) == " " else "Done: ") + task.group(2)] if task else [line]
        elif block and ((item and raw[:1] in " \t") or _continues(block[-1], line)):
            block.append(line)
        else:
            _sentence(out, " ".join(block), inline)
            block = [line]
            item = False
    _sentence(out, " ".join(block), inline)


def _sentence(out: list[str], text: str, inline: Callable[[str], str]) -> None:
    if text and (sentence := _finish_sentence(inline(text))):
        out.append(sentence)


def _continues(previous: str, line: str) -> bool:
    """A hard-wrapped line goes on the sentence before it; any other line is a sentence of its own."""
    return line[0].islower() and not _SENTENCE_END.search(previous)


def _finish_sentence(text: str) -> str:
    text = _DASH_START.sub("", text.strip()).rstrip(" ,;-–—")
    if not any(char.isalnum() for char in text):
        return ""
    return text if _SENTENCE_END.search(text) else text + "."


# ---------------------------------------------------------------------------------- inline markdown


def strip_inline_markdown(text: str) -> str:
    """Inline markdown as plain text: code spans as their content, links as their text, images as
    "an image: <alt>", HTML tags and emphasis dropped. Nothing else is changed."""
    text = _render_inline(
        _ATOM.sub("", text), code=lambda content: content, link=lambda label, href: label.strip() or href,
        image=_image, address=lambda address: address)
    return _SPACE_BEFORE.sub(r"\1", _SPACES.sub(" ", text)).strip()


def _render_inline(text: str, code: Callable[[str], str], link: Callable[[str, str], str],
                   image: Callable[[str], str], address: Callable[[str], str]) -> str:
    """Inline markdown, parsed by markdown-it, as text: emphasis and HTML tags dropped, and each code
    span (its content), link (its rendered text and target), image (its rendered alt text) and autolink
    (its address) as the given function makes it."""
    if not _INLINE_MARKUP.search(text):
        return text
    tokens = _INLINE.parseInline(text, {"references": _REFERENCES.get({})})
    return _render_tokens(tokens[0].children or [], code, link, image, address) if tokens else text


def _render_tokens(tokens: list[Token], code: Callable[[str], str], link: Callable[[str, str], str],
                   image: Callable[[str], str], address: Callable[[str], str]) -> str:
    out: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        kind = token.type
        if kind == "text":
            # a reference link whose definition is missing is still read as its text (regex: markdown
            # leaves it as literal brackets)
            out.append(_REF_LINK.sub(r"\1", token.content) if "][" in token.content else token.content)
        elif kind == "code_inline":
            out.append(code(token.content.strip()))
        elif kind == "link_open":
            end = index + 1
            while end < len(tokens) and tokens[end].type != "link_close":
                end += 1
            inner = _render_tokens(tokens[index + 1:end], code, link, image, address)
            if token.markup == "autolink":
                out.append(address(inner))
            else:
                out.append(link(inner, _INLINE.normalizeLinkText(str(token.attrGet("href") or ""))))
            index = end
        elif kind == "image":
            out.append(image(_render_tokens(token.children or [], code, link, image, address)))
        elif kind == "html_inline":
            out.append(strip_html(token.content))
        elif kind in ("softbreak", "hardbreak"):
            out.append(" ")
        elif not kind.endswith(("_open", "_close")):  # emphasis and strikethrough marks go, their text stays
            out.append(token.content)
        index += 1
    return "".join(out)


def _image(alt: str) -> str:
    return f"an image: {alt}" if alt.strip() else "an image"


def strip_html(text: str) -> str:
    """HTML tags dropped, their text kept (a block tag ends a sentence); the common entities decoded."""
    if "<" in text:
        text = _HTML_TAG.sub(lambda m: ". " if _HTML_BLOCK.match(m.group()) else " ", text)
    if "&" in text:
        text = _ENTITY.sub(lambda m: HTML_ENTITIES[m.group()], text)
    return text


# ------------------------------------------------------------------------------------ links and paths


def speak_urls(text: str) -> str:
    """URLs, bare domains and email addresses as they are said: "a link to github dot com"."""
    return _sub_urls(text, lambda spoken: spoken)


def _sub_urls(text: str, keep: Callable[[str], str]) -> str:
    if "://" in text or "www." in text:
        text = _URL.sub(lambda m: _url_match(m, keep), text)
    if "@" in text:
        text = _EMAIL.sub(lambda m: keep(_speak_email(m.group())), text)
    if "." in text:
        text = _DOMAIN.sub(lambda m: keep(_speak_domain(m)), text)
    if "localhost:" in text or ".0:" in text or ".1:" in text:
        text = _LOCAL_HOST.sub(lambda m: keep(f"{_speak_host(m.group(1))} port {m.group(2)}"), text)
    return text


def _url_match(m: re.Match, keep: Callable[[str], str]) -> str:
    """A URL found in prose, less the punctuation that ends the sentence around it; after "to" or "at"
    it is its host alone ("deployed to myapp dot fly dot dev")."""
    url = m.group()
    end = len(url)
    while end and url[end - 1] in _URL_TRAILER:
        if url[end - 1] == ")" and url.count("(", 0, end) >= url.count(")", 0, end):
            break
        end -= 1
    spoken = speak_url(url[:end])
    before = m.string[max(0, m.start() - 40):m.start()]
    if spoken.startswith("a link to ") and _PLACE_BEFORE.search(before):
        spoken = spoken.removeprefix("a link to ")
    return keep(_without_echo(before, spoken)) + url[end:]


def _without_echo(before: str, spoken: str) -> str:
    """ "issue https://…/issues/45" is "issue 45", not "issue issue 45"."""
    said, words = before.lower().split(), spoken.split()
    for count in (2, 1):
        if len(words) > count and said[-count:] == [word.lower() for word in words[:count]]:
            return " ".join(words[count:])
    return spoken


def _speak_address(address: str) -> str:
    return _speak_email(address) if "@" in address and "://" not in address else speak_url(address)


def _speak_email(address: str) -> str:
    user, _, host = address.partition("@")
    return f"{split_identifiers(user)} at {_speak_host(host)}".strip()


def _speak_domain(m: re.Match) -> str:
    host, port, path = m.group(1), m.group(2), m.group(3)
    if path and len(path) > 1:
        return speak_url(f"https://{m.group()}")
    return _speak_host(host) + (f" port {port}" if port else "")


def speak_url(url: str) -> str:
    """One URL as it is said: its host after "a link to", or what a GitHub or GitLab link points at."""
    if "://" not in url:
        url = "https://" + url
    try:
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").removeprefix("www.")
        port = parts.port
    except ValueError:
        return "a link"
    if parts.scheme.lower() == "file":
        return speak_path(urllib.parse.unquote(parts.path)) or "a link to a file"
    if not host:
        return "a link"
    known = _known_link(host, [s for s in parts.path.split("/") if s], parts.fragment)
    if known:
        return known
    return "a link to " + _speak_host(host) + (f" port {port}" if port else "")


def _speak_host(host: str) -> str:
    return " dot ".join(part for part in re.split(r"[.:\[\]]+", host.lower()) if part)


def _known_link(host: str, segments: list[str], fragment: str) -> str | None:
    """What a GitHub or GitLab link points at, or None."""
    if host not in ("github.com", "gitlab.com") or len(segments) < 2:
        return None
    where = f"on {_speak_host(host)}"
    if len(segments) == 2:
        return f"the {_name_words(segments[1])} repository {where}"
    rest = segments[3:] if segments[2] == "-" else segments[2:]  # gitlab: /group/repo/-/merge_requests/1
    kind, number = rest[0] if rest else "", rest[1] if len(rest) > 1 else ""
    if number.isdigit() and kind in NUMBERED_LINKS:
        return f"{NUMBERED_LINKS[kind]} {number} {where}"
    if kind in ("commit", "commits"):
        return f"a commit {where}"
    if kind in ("blob", "tree") and len(rest) > 2:
        line = re.fullmatch(r"L(\d+)(?:-L(\d+))?", fragment)
        file = speak_path("/".join(rest[2:]))
        if line:
            file += f" lines {line.group(1)} to {line.group(2)}" if line.group(2) else f" line {line.group(1)}"
        return f"{file} {where}"
    if kind == "actions":
        return f"a workflow run {where}"
    if kind == "releases":
        tag = f" {speak_numbers(rest[2])}" if len(rest) > 2 and rest[1] == "tag" else ""
        return f"the{tag} release of {_name_words(segments[1])} {where}"
    return f"a link to the {_name_words(segments[1])} repository {where}"


def speak_paths(text: str) -> str:
    """File paths and file names as their meaningful tail: "parse config dot py", "init dot py in mcp tts"."""
    return _sub_paths(text, lambda spoken: spoken, code=False)


def _sub_paths(text: str, keep: Callable[[str], str], code: bool) -> str:
    def one(m: re.Match) -> str:
        spoken = _path_words(m.group("path"), code)
        if spoken is None:
            return m.group()
        line, to = m.group("line") or m.group("hline"), m.group("to") or m.group("hto")
        if line and to:
            spoken += f" line {line} column {to}" if m.group("sep") == ":" else f" lines {line} to {to}"
        elif line:
            spoken += f" line {line}"
        return keep(spoken)
    return _PATH.sub(one, text) if "." in text or "/" in text or "\\" in text else text


def speak_path(path: str) -> str:
    """One path as its meaningful tail; "" when it has no name in it."""
    parts = _path_parts(path)
    return _tail(parts) if parts else ""


def _path_parts(path: str) -> list[str]:
    parts = [part for part in re.split(r"[\\/]", path) if part not in ("", ".", "..", "~")]
    return parts[1:] if parts and _DRIVE.fullmatch(parts[0]) else parts


def _path_words(path: str, code: bool) -> str | None:
    """A path's meaningful tail, or None when the text is not a path after all ("and/or", "3/4", "e.g")."""
    parts = _path_parts(path)
    if not parts or not any(char.isalpha() for char in parts[-1]):
        return None
    rooted = path[:1] in "/\\~" or path.startswith(("./", ".\\", "../", "..\\")) or bool(_DRIVE.match(path))
    known = _extension(parts[-1]) is not None or bool(_DOTFILE.fullmatch(parts[-1]))
    if len(parts) == 1 and not path.endswith(("/", "\\")) and not rooted:
        if not known:
            return None
    elif not (rooted or code or known):
        if not any(part.lower() in COMMON_DIRS or "_" in part or part.startswith(".") for part in parts):
            return None
    return _tail(parts) or None


def _tail(parts: list[str]) -> str:
    if len(parts) == 2 and parts[0].startswith("@"):  # an npm package: @types/node
        return f"{_file_words(parts[0])} {_file_words(parts[1])}"
    spoken = _file_words(parts[-1])
    if len(parts) > 1 and _generic(parts[-1]):
        folders = parts[-2::-1]  # nearest first; the nearest that says something, else the nearest
        spoken += " in " + _file_words(next((folder for folder in folders if not _generic(folder)), folders[0]))
    return spoken


def _generic(name: str) -> bool:
    stem = name.lstrip(".").split(".")[0].lower()
    return stem in GENERIC_FILES if _extension(name) else stem in GENERIC_FOLDERS


def _extension(name: str) -> str | None:
    if "." not in name.strip("."):
        return None
    extension = name.rsplit(".", 1)[1].lower()
    return extension if extension in FILE_EXTENSIONS or extension in LANGUAGES else None


def _file_words(name: str) -> str:
    """A file name read with every dot as "dot" and its words split: ".env.local" -> "dot env dot local"."""
    lead = "dot " if name.startswith(".") else ""
    pieces = [piece for piece in name.split(".") if piece]
    if not pieces:
        return ""
    words = [_name_words(piece) for piece in pieces[:-1]]
    words.append(pieces[-1].lower() if len(pieces) > 1 else _name_words(pieces[-1]))
    return lead + " dot ".join(word for word in words if word)


def _name_words(name: str) -> str:
    spoken = " ".join(_words(name))
    return "readme" if spoken in ("README", "Readme") else spoken


# -------------------------------------------------------------------------------------- identifiers


def split_identifiers(text: str, kebab: bool = False) -> str:
    """snake_case, SCREAMING_SNAKE, camelCase, PascalCase and dotted.names() read as words; kebab-case
    too when kebab, else only a lowercase run of three or more parts with no English linking word."""
    text = _IDENTIFIER.sub(_identifier, text)
    if "-" in text:
        text = (_CODE_HYPHEN if kebab else _PROSE_KEBAB).sub(" " if kebab else _kebab, text)
    return text


def _identifier(m: re.Match) -> str:
    token = m.group()
    call = token.endswith("()")
    core = token[:-2] if call else token
    if core in BRANDS:
        return core
    if not (call or "." in core or "_" in core or "$" in core or (_HUMP.search(core) and len(_camel(core)) > 1)):
        return token
    return " ".join(word for part in core.split(".") for word in _words(part))


def _kebab(m: re.Match) -> str:
    parts = m.group().split("-")
    return m.group() if any(part in LINKING_WORDS for part in parts) else " ".join(parts)


def _camel(piece: str) -> list[str]:
    return _CAMEL_WORD.findall(piece) if piece.isascii() else [piece]


def _words(token: str) -> list[str]:
    """A name's words: "parseHTTPResponse" -> parse HTTP response, "MAX_RETRIES" -> max retries."""
    letters = [char for char in token if char.isalpha()]
    screaming = bool(letters) and not any(char.islower() for char in letters)
    words = []
    for piece in _NAME_SPLIT.split(token):
        for word in _camel(piece) if piece else ():
            if len(word) > 1 and word.isupper():
                if screaming and word.rstrip("0123456789") not in ACRONYMS:
                    word = word.lower()
            elif not (len(word) > 2 and word.endswith("s") and word[:-1].isupper()):
                word = word if word.isupper() else word.lower()
            words.append("ID" if word == "id" else word)
    return words


# ------------------------------------------------------------------------------- numbers and symbols


def speak_abbreviations(text: str) -> str:
    """Written-only abbreviations said out: e.g. -> for example, vs -> versus, TODO -> to do, C# -> C sharp."""
    lowered = text.lower()
    for trigger, pattern, spoken in _ABBREVIATIONS:
        if trigger in lowered:
            text = pattern.sub(lambda m, spoken=spoken: _abbreviation(m, spoken), text)
    return text


def _abbreviation(m: re.Match, spoken: str) -> str:
    """Capitalized where the written form was, at the start of a sentence or as in "E.g."."""
    starts = m.group()[0].isupper() and (m.group()[1:2].islower() or _STARTS_SENTENCE.search(m.string, 0, m.start()))
    return spoken[0].upper() + spoken[1:] if starts else spoken


def speak_numbers(text: str) -> str:
    """Versions, dates, addresses, units, counts and ranges as they are said."""
    if not _DIGIT.search(text):
        return text
    if "_" in text:
        text = _DIGIT_UNDERSCORE.sub("", text)
    if "-" in text:
        text = _ISO_DATE.sub(lambda m: f"{MONTHS[int(m.group(2)) - 1]} {int(m.group(3))}, {m.group(1)}", text)
    if "@" in text:
        text = _PACKAGE_VERSION.sub(" version ", text)
    if "." in text:
        text = _IP_ADDRESS.sub(lambda m: _speak_host(m.group(1)) + (f" port {m.group(2)}" if m.group(2) else ""),
                               text)
        text = _NAMED_VERSION.sub(lambda m: f"{m.group('name')} {_version(m)}", text)
    if "v" in text or "V" in text:
        text = _V_VERSION.sub(lambda m: _version(m) if _VERSION_BEFORE.search(m.string, 0, m.start()) else
                              f"version {_version(m)}", text)
    if "." in text:
        text = _BARE_VERSION.sub(_version, text)
        text = _WILDCARD_VERSION.sub(lambda m: " point ".join(m.group(1).split(".")) + " point x", text)
    if "~" in text or "≈" in text:
        text = _ABOUT.sub("about ", text)
    if "#" in text:
        text = _NUMBER_SIGN.sub(r"number \1", text)
    if "$" in text:
        text = _DOLLARS.sub(lambda m: f"{m.group(1)} dollar{'s' * (m.group(1) != '1')}", text)
    if "%" in text:
        text = _PERCENT.sub(" percent", text)
    text = _DURATION.sub(_duration, text)
    text = _UNIT.sub(_unit, text)
    if "/" in text:
        text = _RATE.sub(lambda m: f"{_RATE_WORDS[m.group(1)]} per second", text)
        text = _PER.sub(lambda m: f" per {_PER_WORDS[m.group(1)]}", text)
        text = _FRACTION.sub(lambda m: "24 7" if m.group() == "24/7" else f"{m.group(1)} of {m.group(2)}", text)
    if "-" in text or "–" in text:
        text = _RANGE.sub(r"\1 to \2", text)
    return text


def _version(m: re.Match) -> str:
    spoken = " point ".join(m.group("version").split("."))
    pre = _PRERELEASE_PARTS.fullmatch(m.group("pre") or "")
    if pre:
        spoken += f" {PRERELEASES.get(pre.group(1), pre.group(1))}" + (f" {pre.group(2)}" if pre.group(2) else "")
    return spoken


def _duration(m: re.Match) -> str:
    spoken = [f"{number} {UNITS[unit][number != '1']}"
              for number, unit in zip(m.groups(), "hms", strict=False) if number]
    return " ".join(spoken) if len(spoken) > 1 else m.group()


def _unit(m: re.Match) -> str:
    unit = m.group("long") or m.group("short")
    if unit == "s" and len(m.group("number")) == 4 and m.group("number").endswith("0"):
        return m.group()  # the 1990s are a decade, not a duration
    singular, plural = UNITS[unit]
    return f"{m.group('number')} {singular if m.group('number') == '1' else plural}"


def speak_symbols(text: str) -> str:
    """Arrows, comparisons, & and generic brackets as words: -> to, >= at least, Promise<void> Promise of void."""
    if not _ARROW_CHARACTERS.isdisjoint(text):
        text = _ARROW.sub(" to ", text)
    for characters, pattern, spoken in _SYMBOLS:
        if not characters.isdisjoint(text):
            text = pattern.sub(spoken, text)
    for _ in range(3):  # Map<string, Vec<u8>>: the inner pair first
        if "<" not in text:
            break
        text = _GENERIC_TYPE.sub(r" of \1", text)
    return text


def drop_emoji(text: str) -> str:
    """Emoji dropped, with their joiners, variation selectors, skin tones, keycaps and :shortcodes:."""
    text = _EMOJI.sub("", text)
    return _SHORTCODE.sub("", text) if ":" in text else text
