"""slm's tokenizer against the transformers tokenizer built from the same GGUF file.

For every test model ($SLM_TEST_MODELS/*.gguf) and every vocabulary fixture (../shared/fixtures/vocab, or
$SLM_SHARED/fixtures/vocab; --models-only leaves them out), the ids of a corpus of multilingual, code,
emoji and whitespace strings (>= 200, built below) must equal those of
AutoTokenizer.from_pretrained(dir, gguf_file=name), and decode(encode(s)) == s must hold wherever the
tokenizer is lossless (byte-level BPE always; SentencePiece with byte fallback unless s holds U+2581).

slm's side runs through BUILD/bin/tokenize (tests/tools/tokenize.c). Special-token text is parsed on both
sides (transformers always matches added tokens in text), and no BOS/EOS is added.

transformers only wants torch to read GGUF tensors; for the tokenizer alone the metadata is enough, so when
torch is missing its availability check is bypassed for this process (nothing else of transformers runs).

Two corrections keep the reference faithful to the models' own tokenizers:
- transformers' GGUF loader gives every llama-architecture byte-level vocabulary (Llama 3, SmolLM2) the
  plain GPT-2 split, whatever tokenizer.ggml.pre says. The test installs the split of the family's
  published tokenizer.json instead (Llama 3: its Split regex and ignore_merges; SmolLM: Digits then
  ByteLevel), built from `tokenizers` components, not from slm.
- Where a vocabulary fixture carries expected ids (NAME.gguf.inp/.out, from the family's own tokenizer),
  the transformers tokenizer is first checked against them; a file whose conversion disagrees (transformers'
  Phi-3 GGUF converter, for one) is reported as skipped, since it is no reference for that file.
  test_tokenizer_spm.py covers those SentencePiece files (and Gemma 3) against sentencepiece itself.

Chat templates: the template of every file that has one, and the published templates of Llama 3, Gemma,
Phi-3.5 and Phi-4 (written out below), are run with jinja2 the way transformers runs them
(apply_chat_template: sandboxed, trim_blocks, lstrip_blocks; bos_token empty, as slm leaves BOS to the
tokenizer) and must give exactly the text core/chat.c renders for a few conversations. A conversation the
template rejects (raise_exception) or silently drops a message from is not compared.

    python tests/reference/test_tokenizer_hf.py --build BUILD_DIR [--models-only] [--verbose]

Exit: 0 pass, 1 fail, 77 skip (transformers or the tool missing, or no model and no fixture).
"""
import functools
import glob
import os
import subprocess
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def corpus():
    """The strings: hand-picked cases, then whitespace and case variants of a subset (no duplicates)."""
    base = [
        # English, contractions, punctuation
        "Hello world", " Hello world", "Hello World!", "hello, world.", "The quick brown fox jumps over the lazy dog.",
        "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
        "don't won't can't shouldn't y'all o'clock", "It's 5 o'clock somewhere!!!", "Mr. Smith & Mrs. Jones (née Brown)",
        "e.g., i.e., etc. -- and so on...", "''''''```````\"\"\"\"......!!!!!!??????", "------=======", "a-b_c.d/e\\f",
        "ALL CAPS SENTENCE HERE", "mIxEd CaSe WoRdS", "supercalifragilisticexpialidocious",
        "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        # numbers
        "3", "33", "333", "3333", "33333", "333333", "3333333", "33333333", "333333333", "1234567890",
        "3.14159 2.71828 1e-10 6.022e23", "3.3 3..3 3...3", "+1 (555) 123-4567", "2024-01-15T10:30:00Z",
        "$1,234,567.89 €99 £5 ¥1000", "50% off! 2x faster, 0.5x slower", "IPv4 192.168.0.1 and ::1",
        "١٢٣٤٥ ٦٧٨٩٠", "一二三 四五六", "Ⅻ ½ ¾ ² ³ ⁴", "0x1F 0b1010 0o777",
        # European languages
        "Äpfel und Birnen schmecken süß.", "Größenwahn über Straßenbahn", "ied 4 ½ months",
        "Ça va? Très bien, merci. L'été est là.", "¿Dónde está la biblioteca? ¡Aquí!", "Olá, como você está? Não sei.",
        "Zażółć gęślą jaźń", "Příliš žluťoučký kůň úpěl ďábelské ódy", "Árvíztűrő tükörfúrógép",
        "Ελληνικά: Γειά σου Κόσμε", "Русский текст: Привет, мир! Съешь же ещё этих мягких булок.",
        "Українська мова: Ґанок, їжак, європейський", "Български: Здравей, свят", "Türkçe: İstanbul'da ığdır şişe",
        "Tiếng Việt: Cộng hòa Xã hội chủ nghĩa Việt Nam", "Cần phải xem xét", "Íslenska: Þórður og Ægir",
        "Norsk: blåbærsyltetøy", "Suomi: Hyvää päivää, äiti", "Eesti: jäääär", "Lietuvių: ąčęėįšųūž",
        # Asian, Middle Eastern, African, Indic scripts
        "你好，世界！这是一个测试。", "我想在apple工作1314151天～", "日本語のテキスト：こんにちは世界", "カタカナ ひらがな 漢字",
        "한국어 텍스트: 안녕하세요 세계", "ภาษาไทย: สวัสดีชาวโลก", "ខ្មែរ: សួស្តីពិភពលោក",
        "ឃើញឃើញ", "ေမာင္ ျမန္မာ", "ລາວ: ສະບາຍດີ", "العربية: مرحبا بالعالم", "עברית: שלום עולם",
        "فارسی: سلام دنیا", "اردو: ہیلو دنیا", "हिन्दी: नमस्ते दुनिया", "বাংলা: ওহে বিশ্ব",
        "தமிழ்: வணக்கம் உலகம்", "తెలుగు: హలో ప్రపంచం", "ಕನ್ನಡ", "മലയാളം", "ગુજરાતી", "ਪੰਜਾਬੀ",
        "ქართული: გამარჯობა", "Հայերեն: Բարեւ աշխարհ", "አማርኛ: ሰላም ልዑል", "ᐃᓄᒃᑎᑐᑦ", "ᚠᚢᚦᚨᚱᚲ",
        "Kiswahili: Habari ya dunia", "Yorùbá: Ẹ ǹlẹ́ o", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 ∀x∈ℝ: x²≥0", "∑_{i=1}^{n} i = n(n+1)/2",
        # emoji
        "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ (only emoji that has its own token)",
        "Hello, y'all! How are you 😁 ?", "👨‍👩‍👧‍👦 family", "👍🏽👍🏿 skin tones", "🇺🇸🇯🇵🇩🇪 flags", "1️⃣ 2️⃣ #️⃣ keycaps",
        "🦙🦙🦙", "❤️🔥💯", "🏳️‍🌈🏴‍☠️", "emoji at end 😀", "😀start", "🙂🙃🙂🙃🙂🙃🙂🙃",
        # code
        "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
        "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
        "const add = (a, b) => a + b; // arrow", "SELECT name, COUNT(*) FROM users WHERE age > 21 GROUP BY name;",
        "{\"key\": [1, 2, {\"nested\": null}], \"ok\": true}", "<div class=\"x\"><p>Hello &amp; bye</p></div>",
        "if [ -f \"$HOME/.bashrc\" ]; then source ~/.bashrc; fi", "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
        "x = [i**2 for i in range(10) if i % 2 == 0]", "^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@example\\.com$",
        "# Title\n\n- item 1\n- item 2\n\n```python\nprint('hi')\n```\n", "a->b; c<<=2; d>>=3; e&&f||!g",
        "    indented with spaces", "\tindented with a tab", "if x:\n\tif y:\n\t\tpass", "int* p = &x; **pp = 0;",
        "https://example.com/path?query=1&other=two#frag", "user@example.com", "C:\\Program Files\\App\\app.exe",
        "α = β + γ; // greek identifiers", "__init__ __name__ == '__main__'", "camelCaseIdentifier snake_case_id",
        "0.1 + 0.2 != 0.3", "std::vector<std::string> v{\"a\", \"b\"};",
        # whitespace
        "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\t\n", " \n", "\r\n", "a\r\nb\r\n", "   Hello",
        "    Hello\n    Hello", " (", "\n =", "' era", "Hello  world", "Hello   world   ", "trailing space ",
        "two  spaces", "tab\tseparated\tvalues", "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n",
        "non\u00a0breaking\u00a0space", "ideographic\u3000space", "zero\u200bwidth\u200cjoiner\u200d",
        "em\u2003space en\u2002space", "line\u2028separator", "\u00a0leading nbsp", "mixed \t \n \r\n end",
        # mixed and odd
        "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", "C'est l'été 🌞 — 夏天 — лето",
        "abc123def456", "3 apples and 12 oranges cost $4.50", "hello\u0301 combining accent", "ﬁ ligature ﬀ",
        "full-width ＡＢＣ１２３", "Ｈｅｌｌｏ", "ｶﾀｶﾅ", "̀leading combining mark", "\u0000nul\u0001ctl\u007fdel",
        "\u2581already a metaspace", "<s> looks special </s>", "<|endoftext|> and <|im_start|>", "<unk>",
        "Tiny wrap: x" * 20,
    ]
    out, seen = [], set()

    def add(s):
        if s not in seen:
            seen.add(s)
            out.append(s)

    for s in base:
        add(s)
    for s in base[:60]:
        add(" " + s)
        add(s + "\n")
        add(s.upper())
    return out


def fixture_files(args):
    if args.models_only:
        return []
    shared = os.environ.get("SLM_SHARED") or os.path.join(common.REPO_ROOT, "..", "shared")
    return sorted(glob.glob(os.path.join(shared, "fixtures", "vocab", "*.gguf")))


def hf_tokenizer(path):
    """AutoTokenizer(gguf_file=...), bypassing transformers' torch check when torch is absent."""
    from transformers import AutoTokenizer

    try:
        import torch  # noqa: F401
    except ImportError:
        import transformers.modeling_gguf_pytorch_utils as mg

        mg.is_torch_available = lambda: True
    return AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path))


LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@functools.lru_cache(maxsize=None)
def gguf_strings(path):
    """The few string keys the test reads (GGUFReader parses the whole vocabulary: read each file once)."""
    from gguf import GGUFReader

    fields = GGUFReader(path).fields
    keys = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template")
    return {k: fields[k].contents() for k in keys if k in fields}


def gguf_str(path, key):
    return gguf_strings(path).get(key)


def fix_pre_tokenizer(hf, pre):
    """Puts back the family's own split where transformers' GGUF loader replaced it (see the module doc)."""
    from tokenizers import Regex, pre_tokenizers

    bt = hf.backend_tokenizer
    if pre in ("llama-bpe", "llama3"):
        bt.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
        bt.model.ignore_merges = True
    elif pre == "smollm":
        bt.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])


def spm_reference_sane(hf):
    """transformers rebuilds BPE merges from SentencePiece scores; for some vocabularies (Gemma 3) the result
    spells whole words letter by letter. A vocabulary holding 'Hello' and '\u2581world' must use them."""
    vocab = hf.get_vocab()
    words = ("Hello", "\u2581world")
    if not all(w in vocab for w in words):
        return True  # nothing to probe with
    return hf.encode("Hello world", add_special_tokens=False) == [vocab[w] for w in words]


def fixture_cases(path):
    """(strings, expected ids) of a vocabulary fixture, or None when the file has no .inp/.out."""
    inp, out = path + ".inp", path + ".out"
    if not (os.path.isfile(inp) and os.path.isfile(out)):
        return None
    with open(inp, encoding="utf-8") as f:
        strings = f.read().split("\n__ggml_vocab_test__\n")[:-1]
    with open(out, encoding="utf-8") as f:
        ids = [[int(x) for x in ln.split()] for ln in f.read().split("\n")[: len(strings)]]
    return strings, ids


def slm_tokenize(tool, path, strings):
    inp = "".join(s.encode("utf-8", "surrogatepass").hex() + "\n" for s in strings)
    r = subprocess.run([tool, path, "--parse-special"], input=inp.encode(), capture_output=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"tokenize {path} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    lines = r.stdout.decode().split("\n")[: len(strings)]
    res = []
    for ln in lines:
        ids, dec = ln.split("|")
        res.append(([int(x) for x in ids.split()], bytes.fromhex(dec)))
    return res


PUBLISHED_TEMPLATES = {
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
        "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
        "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
        "{% endif %}"),
    "gemma": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = "
        "message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + "
        "'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"),
    "phi3.5": (
        "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' "
        "+ message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
        "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + "
        "message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"),
    "phi4": (
        "{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system<|im_sep|>' + "
        "message['content'] + '<|im_end|>'}}{% elif (message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' "
        "+ message['content'] + '<|im_end|>'}}{% elif (message['role'] == 'assistant') %}"
        "{{'<|im_start|>assistant<|im_sep|>' + message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}"),
}

CONVERSATIONS = [
    ([("user", "Hi!")], True),
    ([("system", "Be brief."), ("user", "Hi!")], True),
    ([("user", "Hi!"), ("assistant", "Hello. How can I help?"), ("user", " What is 2+2?\n")], True),
    ([("user", "Write a haiku about the sea."), ("assistant", "Waves fold into foam,\nsalt wind carries gull voices,"
                                                                 "\nthe tide keeps its time.")], False),
    ([("system", "You speak French."), ("user", "Bonjour 🙂"), ("assistant", "Salut !"), ("user", "Ça va ?")], True),
]


def jinja_render(tmpl, msgs, gen):
    """The template run as transformers' apply_chat_template runs it; None when the template refuses."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Refused(Exception):
        pass

    def raise_exception(message):
        raise Refused(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(tmpl).render(messages=[{"role": r, "content": c} for r, c in msgs],
                                            add_generation_prompt=gen, bos_token="", eos_token="")
    except Refused:
        return None


def slm_render(tool, gguf_path, tmpl_path, convs):
    lines = []
    for msgs, gen in convs:
        lines += [f"{r} {c.encode().hex()}" for r, c in msgs] + [f"= {int(gen)}"]
    cmd = [tool, gguf_path, "--chat"] + (["--template", tmpl_path] if tmpl_path else [])
    r = subprocess.run(cmd, input=("\n".join(lines) + "\n").encode(), capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"tokenize --chat exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    out = []
    for ln in r.stdout.decode().splitlines():
        fam, _, rest = ln.partition(" ")
        out.append((fam, rest) if fam == "ERROR" else (fam, bytes.fromhex(rest).decode("utf-8")))
    return out


def check_chat_templates(tally, tool, files):
    try:
        import jinja2  # noqa: F401
    except ImportError as e:
        tally.skip(f"chat templates: jinja2 not importable ({e})")
        return
    import tempfile

    cases = [(os.path.basename(p), p, gguf_str(p, "tokenizer.chat_template"), None) for p in files]
    cases = [c for c in cases if c[2]]
    with tempfile.TemporaryDirectory() as tmp:
        for name, tmpl in PUBLISHED_TEMPLATES.items():
            path = os.path.join(tmp, name + ".jinja")
            with open(path, "w", encoding="utf-8") as f:
                f.write(tmpl)
            cases.append((f"published {name} template", files[0], tmpl, path))
        for what, gguf_path, tmpl, tmpl_path in cases:
            ours = slm_render(tool, gguf_path, tmpl_path, CONVERSATIONS)
            if ours and ours[0][0] == "ERROR":
                tally.check(False, f"{what}: slm does not recognise the template: {ours[0][1]}")
                continue
            bad, compared = [], 0
            for (msgs, gen), (fam, text) in zip(CONVERSATIONS, ours):
                want = jinja_render(tmpl, msgs, gen)
                if want is None or any(c.strip() and c.strip() not in want for _, c in msgs):
                    continue  # refused, or a message dropped: the template does not take this conversation
                compared += 1
                if fam == "ERROR" or text != want:
                    bad.append((msgs, want, text))
            for msgs, want, text in bad:
                print(f"  {what}: {msgs}\n    jinja2 {want!r}\n    slm    {text!r}")
            tally.check(not bad and compared >= 2,
                        f"{what}: chat rendering equals jinja2's ({compared} conversations, {len(bad)} differ)")


def main():
    ap = common.build_arg_parser(__doc__)
    ap.add_argument("--models-only", action="store_true", help="leave out the vocabulary fixtures")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    _, transformers, _ = common.require_modules("gguf", "transformers", "tokenizers")
    try:
        import torch  # noqa: F401
    except ImportError:
        if int(transformers.__version__.split(".")[0]) >= 5:
            common.skip(f"transformers {transformers.__version__} reads GGUF only with torch: "
                        "install transformers<5 (no torch needed) or torch")
    tool = common.build_binary(args.build, "tokenize")
    if not tool:
        common.skip(f"{args.build}/bin/tokenize not built (tests/tools/tokenize.c)")
    files = common.find_test_models() + fixture_files(args)
    if not files:
        common.skip("no test model ($SLM_TEST_MODELS) and no vocabulary fixture")
    strings = corpus()
    assert len(strings) >= 200, len(strings)
    tally = common.Tally()
    for path in files:
        name = os.path.basename(path)
        kind = gguf_str(path, "tokenizer.ggml.model")
        pre = gguf_str(path, "tokenizer.ggml.pre") or "default"
        if kind not in ("gpt2", "llama"):
            tally.skip(f"{name}: tokenizer.ggml.model {kind!r} is not one slm supports")
            continue
        try:
            hf = hf_tokenizer(path)
        except Exception as e:  # noqa: BLE001 - transformers cannot build this one: nothing to compare with
            tally.skip(f"{name}: transformers cannot build its tokenizer ({type(e).__name__}: {e})")
            continue
        fix_pre_tokenizer(hf, pre)
        fx = fixture_cases(path)
        if fx:
            wrong = sum(hf.encode(s, add_special_tokens=False) != ids for s, ids in zip(*fx))
            if wrong:
                tally.skip(f"{name}: transformers' tokenizer from this GGUF misses {wrong} of {len(fx[0])} of the "
                           "fixture's own expected ids: no reference (test_tokenizer checks the fixture)")
                continue
        elif kind == "llama" and not spm_reference_sane(hf):
            tally.skip(f"{name}: transformers' tokenizer from this GGUF splits 'Hello world' into "
                       f"{hf.encode('Hello world', add_special_tokens=False)} although the vocabulary holds both "
                       "words whole (its loader rebuilds SentencePiece merges wrongly): no reference")
            continue
        ours = slm_tokenize(tool, path, strings)
        bad = []
        for s, (ids, _) in zip(strings, ours):
            want = hf.encode(s, add_special_tokens=False)
            if ids != want:
                bad.append((s, want, ids))
        for s, want, ids in bad[: 10 if not args.verbose else len(bad)]:
            print(f"  {name}: {s!r}\n    transformers {want}\n    slm          {ids}")
        tally.check(not bad, f"{name}: ids equal transformers' on {len(strings)} strings ({len(bad)} differ)")
        lossy = []
        for s, (_, dec) in zip(strings, ours):
            if kind == "llama" and "\u2581" in s:
                continue  # SentencePiece writes spaces as U+2581: such text cannot come back unchanged
            if pre in ("qwen2",) and unicodedata.normalize("NFC", s) != s:
                continue  # Qwen2 normalizes to NFC first
            if dec != s.encode("utf-8"):
                lossy.append((s, dec))
        for s, dec in lossy[:10]:
            print(f"  {name}: decode(encode({s!r})) = {dec!r}")
        tally.check(not lossy, f"{name}: decode(encode(s)) == s ({len(lossy)} differ)")
    check_chat_templates(tally, tool, files)
    tally.finish()


if __name__ == "__main__":
    main()
