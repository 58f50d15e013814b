"""`mcp-tts http`: the OpenAI speech API in front of the same engine hosts (runs in its own server process).

app.py routes, schemas.py the request and error shapes, auth.py the key, encode.py the audio formats,
serve.py uvicorn.
It returns audio and never plays it.
"""
