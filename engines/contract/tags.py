"""Paralinguistic tags: the sounds and styles Chatterbox Turbo takes inline in the text, as "[laugh]".

Both sides need them: the server's text shaping must leave them as written (brackets are markdown
to it), and the engine passes them to Turbo and removes them for models that would read them out.
The list is Turbo's tokenizer's added tokens (added_tokens.json of ResembleAI/chatterbox-turbo).
"""

from __future__ import annotations

import re

TURBO_TAGS = ("[laugh]", "[chuckle]", "[sigh]", "[gasp]", "[cough]", "[clear throat]", "[sniff]", "[groan]",
              "[shush]", "[whispering]", "[angry]", "[happy]", "[sarcastic]", "[surprised]", "[fear]", "[crying]",
              "[dramatic]", "[narration]", "[advertisement]")
KNOWN_TAG = re.compile("|".join(re.escape(tag) for tag in TURBO_TAGS), re.IGNORECASE)
