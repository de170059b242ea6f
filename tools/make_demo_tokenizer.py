#!/usr/bin/env python3
"""Writes a small Llama-3.1-style tokenizer: OUT_DIR/tokenizer.json and OUT_DIR/tokenizer_config.json.

The tokenizer is a real Hugging Face `tokenizers` BPE, TRAINED here on this repository's README.md
and docs/*.md (plus a few lines of our own), with Llama 3's pipeline: no normalizer, the Llama 3
Split regex then ByteLevel, ignore_merges, a ByteLevel + TemplateProcessing("<|begin_of_text|> $A")
post-processor and a ByteLevel decoder. Its vocabulary has exactly N entries
(get_vocab_size(with_added_tokens=True) == N): the trained BPE vocabulary, then the special tokens
<|begin_of_text|>, <|end_of_text|>, <|start_header_id|>, <|end_header_id|>, <|eom_id|>, <|eot_id|>,
<|python_tag|> (the ones the Llama 3.1 chat template writes), then <|reserved_0|>, <|reserved_1|>, ...
for whatever the training leaves over.

tokenizer_config.json has bos_token "<|begin_of_text|>", eos_token "<|eot_id|>", and the Llama 3.1
Instruct chat template (system message, dates, custom and built-in tool calling).

Usage: python3 tools/make_demo_tokenizer.py OUT_DIR --vocab-size N     (N >= 263; needs `tokenizers`)
"""
import argparse
import json
import os
import sys

from tokenizers import Tokenizer, pre_tokenizers, trainers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
import tokenizer_fixtures as fx  # noqa: E402  (the corpus and the Llama 3 pieces, one source)

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]

# Meta's Llama 3.1 Instruct chat template.
LLAMA31_CHAT_TEMPLATE = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""


def build(vocab_size):
    minimum = 256 + len(SPECIALS)
    if vocab_size < minimum:
        raise SystemExit(f"--vocab-size must be at least {minimum} (256 bytes + {len(SPECIALS)} special tokens)")
    pre = fx.split_byte_level(fx.LLAMA3_REGEX)
    pre_object = Tokenizer.from_str(json.dumps(fx.document(fx.bpe_model({}, []), [], pre_tokenizer=pre))).pre_tokenizer
    vocab, merges = fx.train_vocab_merges(pre_object, None, vocab_size - len(SPECIALS),
                                          pre_tokenizers.ByteLevel.alphabet(), [])
    n = len(vocab)
    names = SPECIALS + [f"<|reserved_{k}|>" for k in range(vocab_size - n - len(SPECIALS))]
    added_tokens = [fx.added(n + i, s) for i, s in enumerate(names)]
    post = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        fx.template("<|begin_of_text|>", n)]}
    doc = fx.document(fx.bpe_model(vocab, merges, ignore_merges=True), added_tokens, pre_tokenizer=pre,
                      post_processor=post, decoder=fx.BYTE_LEVEL_DECODER)
    tok = Tokenizer.from_str(json.dumps(doc))
    assert tok.get_vocab_size(with_added_tokens=True) == vocab_size, tok.get_vocab_size(with_added_tokens=True)
    config = {
        "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                   "single_word", "special")}
                                 for t in added_tokens},
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "chat_template": LLAMA31_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": True,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    return tok, config


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--vocab-size", type=int, required=True)
    args = parser.parse_args()
    tok, config = build(args.vocab_size)
    os.makedirs(args.out_dir, exist_ok=True)
    tok.save(os.path.join(args.out_dir, "tokenizer.json"))
    with open(os.path.join(args.out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print(f"wrote {args.out_dir}/tokenizer.json (vocab {args.vocab_size}) and tokenizer_config.json")


if __name__ == "__main__":
    main()
