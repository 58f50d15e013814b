"""Speakable text: agents' messages as a person should hear them, step by step and whole."""

from __future__ import annotations

import random
import re

import pytest

from mcp_tts.speakable import (
    drop_emoji,
    markdown_to_prose,
    speak_abbreviations,
    speak_numbers,
    speak_path,
    speak_paths,
    speak_symbols,
    speak_url,
    speak_urls,
    speakable,
    split_identifiers,
    strip_inline_markdown,
    summarize_code_blocks,
    summarize_tables,
)

MARKDOWN_LEFT = re.compile(r"[#*_`>|~<\[\]{}\\^]|--|==")


def words(text: str) -> str:
    return " ".join(text.split())


# Whole messages, as Claude Code, Codex and Cursor agents write them when they report progress.
MESSAGES = [
    ("Fixed the bug in `src/utils/parse_config.py` — all 42 tests pass ✅",
     "Fixed the bug in parse config dot py — all 42 tests pass."),
    ("Updated **README.md** and bumped version to v2.3.1",
     "Updated readme dot md and bumped version to 2 point 3 point 1."),
    ("Done! I've updated `package.json` to use `vite@5.2.0` and removed the unused `lodash` dependency.",
     "Done! I've updated package dot json to use vite version 5 point 2 point 0 and removed the unused lodash "
     "dependency."),
    ("All tests passing! 🎉 Here's a summary of what I changed:\n\n"
     "1. **Added input validation** in `validateUserInput()`\n"
     "2. **Fixed the race condition** in `src/workers/queue.ts:88`\n"
     "3. **Updated tests** — 15 new cases in `tests/queue.test.ts`",
     "All tests passing! Here's a summary of what I changed:\n"
     "Added input validation in validate user input.\n"
     "Fixed the race condition in queue dot ts line 88.\n"
     "Updated tests — 15 new cases in queue dot test dot ts."),
    ("I'll run the test suite now.\n\n```bash\npytest -q tests/\n```",
     "I'll run the test suite now.\nA code block in shell, 1 line."),
    ("The build failed with:\n\n```\nTypeError: Cannot read properties of undefined (reading 'map')\n"
     "    at UserList (src/components/UserList.tsx:23:18)\n```\n\nI'll add a null check.",
     "The build failed with:\nA code block, 2 lines.\nI'll add a null check."),
    ("Opened a PR: https://github.com/acme/webapp/pull/1287",
     "Opened a PR: pull request 1287 on github dot com."),
    ("Created issue https://github.com/acme/webapp/issues/45 to track the flaky test.",
     "Created issue 45 on github dot com to track the flaky test."),
    ("<!-- internal note -->\nAll set. The PR is ready: https://github.com/acme/webapp/pull/1290 🚀",
     "All set. The PR is ready: pull request 1290 on github dot com."),
    ("The error comes from `node_modules/react-dom/cjs/react-dom.development.js:12345`.",
     "The error comes from react dom dot development dot js line 12345."),
    ("Benchmark: p50 12ms, p99 48ms, throughput ~1.2k req/s (3x the old version).",
     "Benchmark: p50 12 milliseconds, p99 48 milliseconds, throughput about 1.2 thousand requests per second "
     "(3 times the old version)."),
    ("Reduced the Docker image from 1.2GB to 380MB by switching to `python:3.11-slim`.",
     "Reduced the Docker image from 1.2 gigabytes to 380 megabytes by switching to python 3 point 11 slim."),
    ("## Summary\n\n- Migrated `UserService` from callbacks to async/await\n"
     "- Added retry logic with exponential backoff (max 5 retries)\n- Updated docs in `docs/api.md`",
     "Summary.\nMigrated user service from callbacks to async await.\n"
     "Added retry logic with exponential backoff (max 5 retries).\nUpdated docs in api dot md."),
    ("⚠️ Warning: `DATABASE_URL` is not set in `.env.local`, so the app falls back to SQLite.",
     "Warning: database URL is not set in dot env dot local, so the app falls back to SQLite."),
    ("I found 3 issues:\n\n1. Missing `await` in `fetchUser()`\n"
     "2. Off-by-one error in the pagination loop (`i <= len` should be `i < len`)\n"
     "3. The `MAX_PAGE_SIZE` constant is 1000 but the API caps at 100",
     "I found 3 issues:\nMissing await in fetch user.\n"
     "Off-by-one error in the pagination loop (i less than or equal to len should be i less than len).\n"
     "The max page size constant is 1000 but the API caps at 100."),
    ("Tests: ✅ 128 passed, ❌ 2 failed, ⏭️ 5 skipped (in 4.21s)",
     "Tests: 128 passed, 2 failed, 5 skipped (in 4.21 seconds)."),
    ("Switched from `requests` to `httpx` — it's ~40% faster for concurrent calls.",
     "Switched from requests to httpx — it's about 40 percent faster for concurrent calls."),
    ("Refactored `parseHTTPResponse` into `parseHeaders` and `parseBody`.",
     "Refactored parse HTTP response into parse headers and parse body."),
    ("Renamed `get_user_by_id` → `fetch_user`", "Renamed get user by ID to fetch user."),
    ("Added `--no-verify` to skip the pre-commit hooks (not recommended).",
     "Added no verify to skip the pre-commit hooks (not recommended)."),
    ("Bumped `@types/node` from 18.x to 20.x", "Bumped types node from 18 point x to 20 point x."),
    ("Merged into `main` and deployed to https://staging.acme.dev — took 3m 12s.",
     "Merged into main and deployed to staging dot acme dot dev — took 3 minutes 12 seconds."),
    ("The CI job `lint-and-test` failed on `ubuntu-latest` with Node 20.11.0.",
     "The CI job lint and test failed on ubuntu latest with Node 20 point 11 point 0."),
    ("See the docs: [Configuration guide](https://docs.acme.dev/guide/config#env-vars).",
     "See the docs: Configuration guide."),
    ("Memory usage dropped from 2.4 GB to 900 MB (a 62.5% reduction).",
     "Memory usage dropped from 2.4 gigabytes to 900 megabytes (a 62.5 percent reduction)."),
    ("Here's the updated function:\n\n```ts\nexport function add(a: number, b: number): number {\n"
     "  return a + b;\n}\n```\n\nLet me know if you want tests too.",
     "Here's the updated function:\nA code block in TypeScript, 3 lines.\nLet me know if you want tests too."),
    ("I couldn't find `config.yaml` in the repo root — did you mean `config/default.yaml`?",
     "I couldn't find config dot yaml in the repo root — did you mean default dot yaml in config?"),
    ("Updated `mcp_tts/speech.py` lines 120-135 to stream chunks as they arrive.",
     "Updated speech dot py lines 120 to 135 to stream chunks as they arrive."),
    ("Ran `cargo test` — 57 passed; 0 failed; finished in 0.84s",
     "Ran cargo test — 57 passed; 0 failed; finished in 0.84 seconds."),
    ("Fixed the N+1 query in `OrderRepository.findAllWithItems()`",
     "Fixed the N+1 query in order repository find all with items."),
    ("**Root cause:** the `useEffect` hook had a stale closure over `count`. Adding it to the deps array fixes it.",
     "Root cause: the use effect hook had a stale closure over count. Adding it to the deps array fixes it."),
    ("Heads up: this changes the public API (`Client.connect()` now returns a `Promise<Connection>`).",
     "Heads up: this changes the public API (client connect now returns a Promise of Connection)."),
    ("I'll use `snake_case` for Python and `camelCase` for the TypeScript side, e.g. `user_name` vs `userName`.",
     "I'll use snake case for Python and camel case for the TypeScript side, for example user name versus user "
     "name."),
    ("Step 2/5: installing dependencies…", "Step 2 of 5: installing dependencies…"),
    ("Commit `a1b2c3d` reverts the change from PR #482.", "Commit a1b2c3d reverts the change from PR number 482."),
    ("Windows users: the path is `C:\\Users\\dev\\AppData\\Roaming\\mcp-tts\\config.toml`.",
     "Windows users: the path is config dot toml in mcp tts."),
    ("The server listens on `localhost:8080` and the health check is at `/healthz`.",
     "The server listens on localhost port 8080 and the health check is at healthz."),
    ("Warning: 3 deprecation warnings from `pkg_resources` (setuptools>=68).",
     "Warning: 3 deprecation warnings from pkg resources (setuptools at least 68)."),
    ("> Note: this only affects macOS 14+ and iOS 17.", "Note: this only affects macOS 14+ and iOS 17."),
    ("---\n\n**Next steps:**\n- [ ] Add integration tests\n- [x] Update CHANGELOG.md\n- [ ] Tag the v1.0.0 release",
     "Next steps:\nTo do: Add integration tests.\nDone: Update changelog dot md.\n"
     "To do: Tag the version 1 point 0 point 0 release."),
    ("Could you confirm whether I should use `pnpm` or `npm` here? The lockfile (`pnpm-lock.yaml`) suggests pnpm.",
     "Could you confirm whether I should use pnpm or npm here? The lockfile (pnpm lock dot yaml) suggests pnpm."),
    ("Done. Coverage went from 71% → 84% 📈", "Done. Coverage went from 71 percent to 84 percent."),
    ("The function `calculate_total_price()` now handles `None` and negative values (e.g. refunds).",
     "The function calculate total price now handles None and negative values (for example refunds)."),
    ("I've added a `Makefile` target: `make test-unit` runs only the fast tests (~2s).",
     "I've added a Makefile target: make test unit runs only the fast tests (about 2 seconds)."),
    ("Found the leak: `EventEmitter` listeners were never removed in `src/ws/connection.ts`. "
     "Memory is now flat at ~150MB after 10k connections.",
     "Found the leak: event emitter listeners were never removed in connection dot ts. "
     "Memory is now flat at about 150 megabytes after 10 thousand connections."),
    ("Updated the regex to `^[a-z0-9-]+$` so slugs can't contain underscores.",
     "Updated the regex to a code snippet so slugs can't contain underscores."),
    ("Thanks! LGTM 👍 — merging now.", "Thanks! Looks good to me — merging now."),
    ("Stack trace:\n\n```\nTraceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n"
     "    main()\nZeroDivisionError: division by zero\n```",
     "Stack trace:\nA code block, 4 lines."),
    ("Traceback (most recent call last):\n  File \"/home/dev/proj/src/worker.py\", line 88, in run\n"
     "    result = job.execute()\nValueError: job payload is empty",
     "Traceback (most recent call last):\nFile \"worker dot py\", line 88, in run result = job execute.\n"
     "value error: job payload is empty."),
    ("Run `export OPENAI_API_KEY=sk-...` before starting the server.",
     "Run export openai API key equals sk before starting the server."),
    ("I'll make the following edit to `app/page.tsx`:", "I'll make the following edit to page dot tsx in app:"),
    ("Edited files:\n- `src/lib.rs`\n- `Cargo.toml`\n- `tests/integration_test.rs`",
     "Edited files:\nlib dot rs in src.\ncargo dot toml.\nintegration test dot rs."),
    ("Checked https://www.npmjs.com/package/zod — latest is 3.23.8.",
     "Checked a link to npmjs dot com — latest is 3 point 23 point 8."),
    ("Your SSH key (`~/.ssh/id_ed25519.pub`) looks fine.", "Your SSH key (ID ed25519 dot pub) looks fine."),
    ("The `.github/workflows/ci.yml` workflow runs on every push to `main`.",
     "The ci dot yml workflow runs on every push to main."),
    ("Everything's green 🟢 — ready for review!", "Everything's green — ready for review!"),
    ("### Results ###\n\n| Test | Before | After |\n|------|-------:|------:|\n| cold start | 2.1s | 0.4s |\n"
     "| first audio | 850ms | 120ms |\n| memory | 1.1GB | 700MB |",
     "Results.\nA table with 3 rows."),
    ("Press <kbd>Ctrl</kbd>+<kbd>C</kbd> to stop the server.", "Press Ctrl + C to stop the server."),
    ("Latency is <50ms at p99 and >99.9% of requests succeed.",
     "Latency is less than 50 milliseconds at p99 and more than 99.9 percent of requests succeed."),
    ("Here's what it looks like now: ![Screenshot of the settings page](docs/img/settings.png)",
     "Here's what it looks like now: an image: Screenshot of the settings page."),
    ("I'm not sure — could you share the output of `uname -a`?",
     "I'm not sure — could you share the output of uname a?"),
    ("- Fixed the flaky `test_reconnect` test\n  by waiting for the socket to close\n- Cleaned up `utils.py`",
     "Fixed the flaky test reconnect test by waiting for the socket to close.\nCleaned up utils dot py."),
    ("Released 2024-03-15: see https://github.com/acme/webapp/releases/tag/v2.0.0 for notes.",
     "Released March 15, 2024: see the version 2 point 0 point 0 release of webapp on github dot com for notes."),
    ("The `HTTPClient` now retries 3-5 times with jitter; timeouts are 30s each, i.e. ~2.5 min worst case.",
     "The HTTP client now retries 3 to 5 times with jitter; timeouts are 30 seconds each, that is about 2.5 "
     "minutes worst case."),
    ("TODO: handle the `KeyboardInterrupt` case in `__main__.py`.",
     "To do: handle the keyboard interrupt case in main dot py."),
    ("Installed `torch==2.3.1+cu121` — CUDA 12.1 is available on the H100 (80GB).",
     "Installed torch 2 point 3 point 1+cu121 — CUDA 12 point 1 is available on the H100 (80 gigabytes)."),
    ("Fixed the `TS2345` error in `src/api/client.ts#L42` — `string | undefined` wasn't assignable to `string`.",
     "Fixed the TS2345 error in client dot ts line 42 — string or undefined wasn't assignable to string."),
    ("I ran `git log --oneline -5` and the last good commit is `f3e1a9c` (v1.4.2).",
     "I ran git log oneline -5 and the last good commit is f3e1a9c (version 1 point 4 point 2)."),
    ("Update: 4/4 checks passed ✔️ and the docs site is live at docs.acme.dev",
     "Update: 4 of 4 checks passed and the docs site is live at docs dot acme dot dev."),
    ("Let me check https://github.com/acme/webapp/blob/main/src/server/index.ts#L10-L24 first.",
     "Let me check index dot ts in server lines 10 to 24 on github dot com first."),
    ("Both `README.md` and `CLAUDE.md` now say to run `uv sync --extra test` first.",
     "Both readme dot md and claude dot md now say to run uv sync extra test first."),
    ("<details>\n<summary>Full log</summary>\n\n```\nok 1\nok 2\n```\n\n</details>",
     "Full log.\nA code block, 2 lines."),
    ("Working on it... 🤔", "Working on it..."),
    ("Use `Ctrl+Shift+P` → \"Reload Window\" if the extension doesn't pick up the change.",
     "Use Ctrl+Shift+P to \"Reload Window\" if the extension doesn't pick up the change."),
    ("Renamed the helper in [`utils/format_date.ts`](https://github.com/acme/app/blob/main/utils/format_date.ts) "
     "to `formatDate`.",
     "Renamed the helper in format date dot ts to format date."),
    ("Details are in [PR #88](https://github.com/acme/app/pull/88) and [](https://github.com/acme/app/issues/90).",
     "Details are in PR number 88 and issue 90 on github dot com."),
    ("Pasted ``` by mistake, then renamed `get_user` → `fetch_user`",
     "Pasted by mistake, then renamed get user to fetch user."),
    ("> Output:\n> ```sh\n> npm test\n> npm run lint\n> ```\n> All good.",
     "Output:\nA code block in shell, 2 lines.\nAll good."),
    ("## 🚀 Release v0.4.0\n\nShipped to PyPI — `pip install -U mcp-tts` to upgrade.",
     "Release version 0 point 4 point 0.\nShipped to PyPI — pip install U mcp tts to upgrade."),
    ("🎉🎉🎉", ""),
    ("```python\n```", "An empty code block in Python."),
    ("   \n\n  ", ""),
]


@pytest.mark.parametrize("message, spoken", MESSAGES, ids=[message[:40] for message, _ in MESSAGES])
def test_agent_messages_are_spoken_as_a_person_would_say_them(message, spoken):
    assert speakable(message) == spoken


@pytest.mark.parametrize("spoken", [spoken for _, spoken in MESSAGES if spoken], ids=repr)
def test_speakable_text_stays_as_it_is(spoken):
    assert speakable(spoken) == spoken


def test_messages_run_together_are_spoken_the_same_twice():
    rng = random.Random(4)
    messages = [message for message, _ in MESSAGES]
    for _ in range(400):
        joiner = rng.choice(["\n", " ", "\n\n", "\n- ", " **", "\n> ", "\n## "])
        spoken = speakable(joiner.join(rng.sample(messages, rng.randint(2, 4))))
        assert speakable(spoken) == spoken


CODE_BLOCKS = [
    ("```py\na\nb\nc\n```", "A code block in Python, 3 lines."),
    ("```ts\nconst x = 1;\n```", "A code block in TypeScript, 1 line."),
    ("```sh\nnpm install\nnpm test\n```", "A code block in shell, 2 lines."),
    ("```rust\nfn main() {}\n```", "A code block in Rust, 1 line."),
    ("```jsx\n<App />\n```", "A code block in JavaScript, 1 line."),
    ("```c++\nint x;\n```", "A code block in C plus plus, 1 line."),
    ("```\nfoo\n```", "A code block, 1 line."),
    ("```text\nplain output\n```", "A code block, 1 line."),
    ("```brainfudge\n+++\n```", "A code block, 1 line."),
    ("~~~yaml\na: 1\nb: 2\n~~~", "A code block in YAML, 2 lines."),
    ("```diff\n-a\n+b\n```", "A diff, 2 lines."),
    ('```python title="x.py"\nx = 1\n```', "A code block in Python, 1 line."),
    ("```12:14:src/app.py\na\nb\nc\n```", "A code block in Python, 3 lines."),  # Cursor's code citation
    ("```python\n\n\nx = 1\n\n```", "A code block in Python, 1 line."),
    ("```go\nfunc main() {}\n", "A code block in Go, 1 line."),  # never closed: runs to the end
    ("````md\n```py\nx\n```\n````", "A code block in Markdown, 3 lines."),
    ("Before\n```\nx\n```\nAfter", "Before\n\nA code block, 1 line.\n\nAfter"),
    ("Use ```x``` here", "Use ```x``` here"),
    ("``` then `get_user` → `fetch_user`", "``` then `get_user` → `fetch_user`"),
    ("```\n```", "An empty code block."),
    ("  ```PowerShell\n  Get-Item .\n  ```", "A code block in PowerShell, 1 line."),
    ("> ```sh\n> npm test\n```\nAll good.", ">\n>A code block in shell, 1 line.\n>\nAll good."),
]


@pytest.mark.parametrize("text, spoken", CODE_BLOCKS, ids=repr)
def test_code_blocks_become_a_short_summary(text, spoken):
    assert summarize_code_blocks(text).strip() == spoken


TABLES = [
    ("| a | b |\n|---|---|\n| 1 | 2 |", "A table with 1 row."),
    ("a | b\n--- | ---\n1 | 2\n3 | 4", "A table with 2 rows."),
    ("| h |\n|:-:|", "An empty table."),
    ("Use a | b for pipes", "Use a | b for pipes"),
    ("x\n| a | b |\n| - | - |\n| 1 | 2 |\n\ny", "x\n\nA table with 1 row.\n\n\ny"),
    ("| a | b |\n|---|---|\n| 1 | 2 |\nThat is all.", "A table with 1 row.\n\nThat is all."),
]


@pytest.mark.parametrize("text, spoken", TABLES, ids=repr)
def test_tables_become_a_count_of_rows(text, spoken):
    assert summarize_tables(text).strip() == spoken


MARKDOWN = [
    ("# Title", "Title."),
    ("## Done! ##", "Done!"),
    ("- one\n- two", "one.\ntwo."),
    ("1. First step\n2) Second step", "First step.\nSecond step."),
    ("* **bold** and *italic* and ~~gone~~", "bold and italic and gone."),
    ("> quoted text", "quoted text."),
    ("text\n\n---\n\nmore", "text.\nmore."),
    ("Title\n=====", "Title."),
    ("A [link](https://x.com) here", "A link here."),
    ("![alt text](a.png)", "an image: alt text."),
    ("a line that\nwraps here", "a line that wraps here."),
    ("First line\nSecond line", "First line.\nSecond line."),
    ("- [x] done thing\n- [ ] open thing", "Done: done thing.\nTo do: open thing."),
    ("> [!TIP]\n> Use it", "Tip:\nUse it."),
    ("<b>bold</b> text", "bold text."),
    ("Keep `__init__` and snake_case", "Keep __init__ and snake_case."),
    ("[1]: https://example.com\nSee [docs][1]", "See docs."),
    ("Ends with colon:", "Ends with colon:"),
    ("Question?", "Question?"),
    ("<!-- hidden -->\nVisible", "Visible."),
    ("   ", ""),
    ("- \n-\n***", ""),
    ("• Bullet dot", "Bullet dot."),
    ("Nested\n  - sub item\n    - deeper", "Nested.\nsub item.\ndeeper."),
]


@pytest.mark.parametrize("text, prose", MARKDOWN, ids=repr)
def test_markdown_becomes_sentences(text, prose):
    assert markdown_to_prose(text) == prose


# Where agents' markdown and CommonMark part ways, what the agent meant is what is read.
AGENT_MARKDOWN = [
    ("| a | b |\n|---|---|\n| 1 | 2 |\nThat is all.", "A table with 1 row.\nThat is all."),  # GFM: a 2nd row
    ("> ```sh\n> npm test\n```\nAll good.", "A code block in shell, 1 line.\nAll good."),  # closed outside
    ("- Run:\n  ```sh\n  make\n  ```\n- Next item", "Run:\nA code block in shell, 1 line.\nNext item."),
    ("<div>\n```\ncode\n```\n</div>", "A code block, 1 line."),  # a fence in an HTML block
    ("<details>\n<summary>**Full** log</summary>\nShown\n</details>", "Full log.\nShown."),
    ("Fixed it.\nAll good\n---", "Fixed it.\nAll good."),  # a setext heading's lines stay sentences
    ("See [the docs][1] and [the guide][2].\n\n[1]: https://x.io", "See the docs and the guide."),
    ("Text\n3. foo\n4. Bar", "Text.\nfoo.\nBar."),  # numbered lines that CommonMark leaves in the paragraph
    ("- item one\n  continues Here\n- Item two\nLazy Line", "item one continues Here.\nItem two.\nLazy Line."),
    ("A\n\n    indented line\n    Second", "A.\nindented line.\nSecond."),  # indentation is not code
    ("Run `a\nb` now <!-- a\nnote -->", "Run a b now."),
    ("\\*not emphasis\\* and 2 * 3 * 4", "*not emphasis* and 2 * 3 * 4."),
]


@pytest.mark.parametrize("text, prose", AGENT_MARKDOWN, ids=repr)
def test_markdown_as_agents_write_it(text, prose):
    assert markdown_to_prose(text) == prose


PATHS = [
    ("src/utils/parse_config.py", "parse config dot py"),
    ("src/mcp_tts/__init__.py", "init dot py in mcp tts"),
    ("web/src/index.ts", "index dot ts in web"),
    ("crates/engine/src/mod.rs", "mod dot rs in engine"),
    ("cmd/server/main.go", "main dot go in server"),
    ("speech.py:42", "speech dot py line 42"),
    ("speech.py:42:7", "speech dot py line 42 column 7"),
    ("speech.py:10-20", "speech dot py lines 10 to 20"),
    ("/home/dev/.config/mcp-tts/config.toml", "config dot toml in mcp tts"),
    ("~/.bashrc", "dot bashrc"),
    ("C:\\Users\\dev\\project\\main.py", "main dot py in project"),
    ("./scripts/build.sh", "build dot sh"),
    ("Edit README.md now", "Edit readme dot md now"),
    ("docs/", "docs"),
    ("and/or", "and/or"),
    ("3/4 done", "3/4 done"),
    ("e.g. this", "e.g. this"),
    ("Node.js", "node dot js"),
    ("package-lock.json", "package lock dot json"),
    ("vite.config.ts", "vite dot config dot ts"),
    (".env.example", "dot env dot example"),
    ("read/write access", "read/write access"),
    ("src/components", "components"),
    ("/etc/hosts", "hosts"),
    ("CLAUDE.md", "claude dot md"),
    ("src/lib/utils.ts", "utils dot ts in lib"),
    ("See parse.py.", "See parse dot py."),
    ("console.log() call", "console.log() call"),
    ("ASP.NET", "ASP.NET"),
    ("the /help command", "the help command"),
]


@pytest.mark.parametrize("text, spoken", PATHS, ids=repr)
def test_paths_are_read_as_their_meaningful_tail(text, spoken):
    assert speak_paths(text) == spoken


@pytest.mark.parametrize("path, spoken", [
    ("@types/node", "types node"), ("index.ts", "index dot ts"), ("packages/api/src/", "src in api"), ("/", ""),
], ids=repr)
def test_one_path(path, spoken):
    assert speak_path(path) == spoken


URLS = [
    ("https://github.com/acme/app/pull/12", "pull request 12 on github dot com"),
    ("https://github.com/acme/app/issues/7", "issue 7 on github dot com"),
    ("https://gitlab.com/group/proj/-/merge_requests/3", "merge request 3 on gitlab dot com"),
    ("https://github.com/acme/app/commit/abc123", "a commit on github dot com"),
    ("https://github.com/acme/mcp-tts", "the mcp tts repository on github dot com"),
    ("https://github.com/acme/app/blob/main/src/speech.py#L42", "speech dot py line 42 on github dot com"),
    ("https://www.example.com/path?q=1", "a link to example dot com"),
    ("See https://docs.python.org/3/library/re.html.", "See a link to docs dot python dot org."),
    ("Go to http://localhost:3000/login", "Go to localhost port 3000"),
    ("(https://en.wikipedia.org/wiki/Foo_(bar))", "(a link to en dot wikipedia dot org)"),
    ("Mail dev@acme.io", "Mail dev at acme dot io"),
    ("Live at my-app.fly.dev now", "Live at my-app dot fly dot dev now"),
    ("http://[::1", "a link"),
    ("ftp://files.acme.org/x.tar.gz", "a link to files dot acme dot org"),
    ("file:///home/dev/report.pdf", "report dot pdf"),
    ("github.com/acme/app/pull/9", "pull request 9 on github dot com"),
    ("https://github.com/acme", "a link to github dot com"),
]


@pytest.mark.parametrize("text, spoken", URLS, ids=repr)
def test_urls_are_read_as_their_host_or_what_they_point_at(text, spoken):
    assert speak_urls(text) == spoken


def test_one_url_says_it_is_a_link():
    assert speak_url("https://example.com/a/b") == "a link to example dot com"


IDENTIFIERS = [
    ("parse_config", "parse config"),
    ("MAX_RETRIES", "max retries"),
    ("HTTP_TIMEOUT_MS", "HTTP timeout ms"),
    ("getUserById", "get user by ID"),
    ("parseHTTPResponse", "parse HTTP response"),
    ("XMLHttpRequest", "XML http request"),
    ("UserService", "user service"),
    ("os.path.join()", "os path join"),
    ("torch.cuda.is_available()", "torch cuda is available"),
    ("__init__", "init"),
    ("useState and useEffect", "use state and use effect"),
    ("GitHub and JavaScript and macOS", "GitHub and JavaScript and macOS"),
    ("APIs and URLs", "APIs and URLs"),
    ("base64Encode", "base64 encode"),
    ("test_case_2", "test case 2"),
    ("well-known end-to-end up-to-date", "well-known end-to-end up-to-date"),
    ("the eslint-plugin-react package", "the eslint plugin react package"),
    ("$HOME", "home"),
    ("Plain words stay Plain", "Plain words stay Plain"),
    ("run()", "run"),
    ("café_au_lait", "café au lait"),
    ("iPhone", "iPhone"),
    ("S3Bucket", "S3 bucket"),
]


@pytest.mark.parametrize("text, spoken", IDENTIFIERS, ids=repr)
def test_identifiers_are_split_into_words(text, spoken):
    assert split_identifiers(text) == spoken


@pytest.mark.parametrize("text, in_prose, in_code", [
    ("no-unused-vars", "no unused vars", "no unused vars"),
    ("mcp-tts", "mcp-tts", "mcp tts"),
    ("pre-commit", "pre-commit", "pre commit"),
], ids=repr)
def test_kebab_case_is_split_in_code_and_in_long_runs(text, in_prose, in_code):
    assert split_identifiers(text) == in_prose
    assert split_identifiers(text, kebab=True) == in_code


NUMBERS = [
    ("v2.3.1", "version 2 point 3 point 1"),
    ("bumped the version to v2.3.1", "bumped the version to 2 point 3 point 1"),
    ("v1.0.0-rc.1", "version 1 point 0 point 0 release candidate 1"),
    ("2.0.0b3", "2 point 0 point 0 beta 3"),
    ("Python 3.11", "Python 3 point 11"),
    ("Claude 3.5 Sonnet", "Claude 3 point 5 Sonnet"),
    ("upgraded to 4.2.0", "upgraded to 4 point 2 point 0"),
    ("react@18.2.0", "react version 18 point 2 point 0"),
    ("18.x", "18 point x"),
    ("v2", "version 2"),
    ("1.5GB", "1.5 gigabytes"),
    ("42ms", "42 milliseconds"),
    ("1 ms", "1 millisecond"),
    ("0.5s", "0.5 seconds"),
    ("2.5 hrs", "2.5 hours"),
    ("2m30s", "2 minutes 30 seconds"),
    ("16 GiB", "16 gibibytes"),
    ("500 MB/s", "500 megabytes per second"),
    ("120 tok/s", "120 tokens per second"),
    ("3x faster", "3 times faster"),
    ("10k", "10 thousand"),
    ("7B model", "7 billion model"),
    ("~200 lines", "about 200 lines"),
    ("#123", "number 123"),
    ("PR #123", "PR number 123"),
    ("87%", "87 percent"),
    ("$5", "5 dollars"),
    ("1,234 files", "1,234 files"),
    ("1_000_000 rows", "1000000 rows"),
    ("3-5 retries", "3 to 5 retries"),
    ("3/4 tests", "3 of 4 tests"),
    ("2024-01-15", "January 15, 2024"),
    ("127.0.0.1:8000", "127 dot 0 dot 0 dot 1 port 8000"),
    ("in the 1990s", "in the 1990s"),
    ("x86-64", "x86-64"),
    ("555-123-4567", "555-123-4567"),
    ("UTF-8", "UTF-8"),
]


@pytest.mark.parametrize("text, spoken", NUMBERS, ids=repr)
def test_numbers_versions_and_units_are_said_out(text, spoken):
    assert speak_numbers(text) == spoken


ABBREVIATIONS = [
    ("e.g. this", "for example this"),
    ("E.g. this", "For example this"),
    ("i.e. that", "that is that"),
    ("foo, bar, etc. Then", "foo, bar, et cetera. Then"),
    ("foo, etc., bar", "foo, et cetera, bar"),
    ("React vs Vue", "React versus Vue"),
    ("VS Code", "VS Code"),
    ("w/o tests", "without tests"),
    ("w/ docs", "with docs"),
    ("TODO: x", "To do: x"),
    ("Thanks, LGTM", "Thanks, looks good to me"),
    ("TL;DR: works", "In short: works"),
    ("C# and C++", "C sharp and C plus plus"),
    (".NET 8", "dot net 8"),
    ("k8s", "Kubernetes"),
    ("stdout and stderr", "standard out and standard error"),
    ("See README", "See readme"),
    ("The CLI reads JSON from the API", "The CLI reads JSON from the API"),
]


@pytest.mark.parametrize("text, spoken", ABBREVIATIONS, ids=repr)
def test_abbreviations_are_said_out(text, spoken):
    assert speak_abbreviations(text) == spoken


SYMBOLS = [
    ("A -> B", "A to B"),
    ("x => y", "x to y"),
    ("a → b", "a to b"),
    ("x >= 3", "x at least 3"),
    ("n != 0", "n is not 0"),
    ("Promise<void>", "Promise of void"),
    ("Map<string, Vec<u8>>", "Map of string, Vec of u8"),
    ("R&D", "R and D"),
    ("a && b", "a and b"),
    ("Settings > Privacy", "Settings, Privacy"),
    ("1920x1080", "1920 by 1080"),
    ("0x1F", "0x1F"),
    ("input/output", "input output"),
    ("latency ↓ 30%", "latency down 30%"),
]


@pytest.mark.parametrize("text, spoken", SYMBOLS, ids=repr)
def test_symbols_are_said_as_words(text, spoken):
    assert speak_symbols(text) == spoken


EMOJI = [
    ("Done ✅", "Done"),
    ("🚀 Shipped!", "Shipped!"),
    ("👩‍💻 dev", "dev"),
    ("🇫🇷 flag", "flag"),
    ("1️⃣ first", "1 first"),
    ("👍🏽 ok", "ok"),
    ("⚠️ careful", "careful"),
    (":rocket: launched :tada:", "launched"),
    ("Status: 🟢 green", "Status: green"),
    ("✔ ✗ ★", ""),
    ("日本語 ok", "日本語 ok"),
    ("café ©", "café ©"),
]


@pytest.mark.parametrize("text, spoken", EMOJI, ids=repr)
def test_emoji_are_dropped(text, spoken):
    assert words(drop_emoji(text)) == spoken


def test_inline_markdown_alone_keeps_code_as_written():
    assert strip_inline_markdown("**Run** `make_all` via [the docs](https://x.io)<br>") == "Run make_all via the docs."


def test_inline_markdown_nested_in_a_link_keeps_its_own_text():
    assert strip_inline_markdown("See [`a` and ![img](p.png)](https://z.io)") == "See a and an image: img"


def test_a_message_of_only_code_still_says_something():
    assert speakable("```js\nconsole.log(1)\n```") == "A code block in JavaScript, 1 line."


FRAGMENTS = [
    "# ", "## ", "- ", "* ", "+ ", "1. ", "> ", "**", "*", "__", "_", "~~", "`", "```", "~~~", "```py\n", "|",
    "| a | b |\n|---|---|\n", "---", "===", "[", "](", ")", "![", "<", ">", "<br>", "<!--", "-->", "&amp;", "\n",
    "\n\n", " ", "\t", "http://", "https://github.com/o/r/pull/1", "www.", ".com", "/", "\\", "~/", "./", "C:\\",
    ".py", ":42", "#L3", "#", "#12", "v1.2.3", "1.5GB", "42ms", "3x", "~", "-", "->", "=>", "&", "e.g.",
    "snake_case", "camelCase", "HTTPServer", "os.path.join()", "x", "A", "0", "9", "é", "😀", "👩‍💻", "🇫🇷", "\ufe0f",
    "\u200d", "✅", "→", "•", "$", "%", "@", "^", "{", "}", "(", ")", ":", ";", ",", ".", "!", "?", "'", '"', "\x00",
    "\x1b", "\ud800", "\U000f0001", "\U0010ffff", "\u2028", "\r\n", "\r", "日本", "a-b-c", "1-2", "3/4", "2024-01-15",
    "127.0.0.1:80", "me@x.io", ":rocket:", "[x] ", "[ ] ", "[!NOTE]", "a.b", "__init__.py", "src/",
]


def random_texts(count: int, seed: int):
    rng = random.Random(seed)
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 40)):
            roll = rng.random()
            if roll < 0.7:
                parts.append(rng.choice(FRAGMENTS))
            elif roll < 0.85:
                parts.append("".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 5))))
            else:
                parts.append("".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 3))))
        yield "".join(parts)


def test_random_markdown_and_unicode_never_raise_and_leave_no_markdown():
    for text in random_texts(3000, seed=6):
        spoken = speakable(text)
        assert not MARKDOWN_LEFT.search(spoken), (text, spoken)


@pytest.mark.parametrize("step", [
    summarize_code_blocks, summarize_tables, markdown_to_prose, strip_inline_markdown, speak_urls, speak_paths,
    speak_path, speak_url, split_identifiers, speak_abbreviations, speak_numbers, speak_symbols, drop_emoji,
], ids=lambda step: step.__name__)
def test_every_step_takes_any_text(step):
    for text in random_texts(300, seed=7):
        assert isinstance(step(text), str)


def test_a_long_message_is_spoken_whole():
    paragraph = MESSAGES[3][0] + "\n\n" + MESSAGES[12][0] + "\n\n" + MESSAGES[55][0] + "\n\n"
    text = (paragraph * (10_000 // len(paragraph) + 1))[:10_000]
    spoken = speakable(text)
    assert spoken.count("validate user input") >= 10
    assert not MARKDOWN_LEFT.search(spoken)


@pytest.mark.parametrize("text, expected", [
    ("That was close [laugh] but the build passed.", "That was close [laugh] but the build passed."),
    ("**Done** [sigh]. Finally.", "Done [sigh]. Finally."),
    ("[Clear Throat] Attention please: `deploy_prod` is running.",
     "[clear throat] Attention please: deploy prod is running."),
    ("- [x] tests [chuckle]", "Done: tests [chuckle]."),
    ("A [note] is not a tag.", "A note is not a tag."),
])
def test_turbo_tags_stay_as_written(text, expected):
    assert speakable(text) == expected
