#!/usr/bin/env python3
"""By hand: the official `openai` client against `sgt serve`'s proxy, with and without stream=True.

    VENV/bin/python tools/serve_openai_client.py http://127.0.0.1:8600/v1 KEY [MODEL] [--same]

Start the two servers first (README, "Serve"). Prints both answers and their usage. With fresh
secure noise per request the two answers differ; start the proxy with --seed N (tests only) and
they are equal, which the script then checks with --same.
"""
import sys

from openai import OpenAI


def main() -> int:
    base_url, key = sys.argv[1], sys.argv[2]
    rest = [a for a in sys.argv[3:] if a != "--same"]
    model = rest[0] if rest else "demo_base"
    client = OpenAI(base_url=base_url, api_key=key)
    messages = [{"role": "system", "content": "You are a careful clinical assistant."},
                {"role": "user", "content": "Summarize the patient's discharge notes."}]
    plain = client.chat.completions.create(model=model, messages=messages, max_tokens=16,
                                           temperature=0)
    text = plain.choices[0].message.content
    print("plain:   ", repr(text), plain.choices[0].finish_reason, plain.usage)
    pieces = []
    usage = None
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=16,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    streamed = "".join(pieces)
    print("streamed:", repr(streamed), usage)
    if "--same" in sys.argv and streamed != text:
        print("FAIL: the streamed answer differs from the plain one")
        return 1
    if not text or not streamed or usage is None:
        print("FAIL: an empty answer or no usage")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
