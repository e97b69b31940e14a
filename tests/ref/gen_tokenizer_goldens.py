"""Writes tests/golden/clip_tokenizer.json: token ids of 200+ strings from the two reference CLIP
tokenizers, for tests/test_tokenizer.c.

Regenerate from the repository root with the reference venv (open_clip 3.3.0, transformers 4.40.2,
ftfy 6.3.1, regex; nothing is downloaded):

    /work/venv-ref/bin/python tests/ref/gen_tokenizer_goldens.py

References:
  open_clip  open_clip.tokenizer.SimpleTokenizer on tests/golden/clip_vocab/bpe_simple_vocab_16e6.txt.gz
             (the file open_clip bundles, also OpenAI CLIP's): ftfy, html.unescape twice, pad 0.
  hf         transformers.CLIPTokenizer (the Python one; ftfy installed, so it uses ftfy.fix_text)
             built from vocab.json + merges.txt that this script writes from the same .gz into a
             temporary directory, in the layout of an SD 1.x checkpoint's tokenizer/ folder;
             called as Stable Diffusion does: padding="max_length", max_length=77,
             truncation=True (pads with <|endoftext|> = 49407).

Output: {"context_length": 77, "merges_sha256": ..., "cases": [{"text", "open_clip", "hf",
"ids", "decode"}]} where open_clip/hf are the 77 padded ids, ids the untruncated
SimpleTokenizer.encode (no BOS/EOS) and decode SimpleTokenizer.decode(ids).
"""
import gzip
import hashlib
import json
import os
import tempfile

from open_clip.tokenizer import SimpleTokenizer, bytes_to_unicode
from transformers import CLIPTokenizer

GZ_PATH = os.path.join("tests", "golden", "clip_vocab", "bpe_simple_vocab_16e6.txt.gz")
OUT_PATH = os.path.join("tests", "golden", "clip_tokenizer.json")
CONTEXT = 77


def write_hf_files(directory):
    """vocab.json and merges.txt as SD 1.x ships them, rebuilt from OpenAI's merges."""
    lines = gzip.open(GZ_PATH).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    encoder = dict(zip(vocab, range(len(vocab))))
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(encoder, f, ensure_ascii=False)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


def strings():
    s = [
        "",
        " ",
        "a photo of a cat",
        "A Photo Of A Cat",
        "a photograph of an astronaut riding a horse",
        "an oil painting of a dog, trending on artstation",
        "Hello, world!",
        "hello world",
        "HELLO WORLD!!!",
        "  leading and trailing spaces   ",
        "multiple     spaces\tand\ttabs\nand\nnewlines\r\nwindows",
        "\u00a0non\u00a0breaking\u2003em\u2002space\u3000ideographic",
        "x\u200by",  # zero-width space: not whitespace for str.split
        "it's",
        "It's a dog's life",
        "don't won't can't shouldn't",
        "we're they've I'm you'll he'd",
        "'s 't 're 've 'm 'll 'd",
        "''s quoted 's",
        "rock'n'roll",
        "O'Neil's café",
        "'tis the season",
        "SHE'S HERE",
        "l'ſ long s",
        "Yes!'s",
        "1234567890",
        "3.14159",
        "100%",
        "$19.99",
        "1,000,000 dollars",
        "2024-01-15",
        "12:30pm",
        "v1.5",
        "model-v2.1-final",
        "4k uhd 8k resolution",
        "1st 2nd 3rd 4th",
        "٣ arabic-indic digit ٤٥",
        "Ⅻ roman numeral twelve",
        "½ cup ¾",
        "x² + y³ = z⁴",
        "①②③ circled",
        "१२३ devanagari digits",
        "!@#$%^&*()_+-=[]{}|;:,.<>?/~`",
        "...",
        "?!",
        "!!!???",
        "a.b.c",
        "e-mail",
        "snake_case_name",
        "CamelCaseName",
        "path/to/file.png",
        "https://example.com/image?id=42&size=large",
        "user@example.com",
        "#hashtag @mention",
        "(parenthesized) [bracketed] {braced}",
        "\"double quoted\"",
        "'single quoted'",
        "\u201ccurly double\u201d \u2018curly single\u2019",
        "it\u2019s curly",
        "\u201ehigh-low\u201c",
        "em\u2014dash en\u2013dash",
        "ellipsis\u2026",
        "bullet \u2022 point",
        "\u00abguillemets\u00bb",
        "café",
        "CAFÉ",
        "naïve résumé",
        "Ångström",
        "Ærøskøbing",
        "Straße",
        "STRASSE",
        "ĳssel ﬁne ﬂower ﬀ",
        "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ １２３",
        "ｶﾀｶﾅ halfwidth",
        "Ὀδυσσεύς",
        "ΟΔΥΣΣΕΥΣ",
        "ΣΊΣΥΦΟΣ",
        "ΑΣ.",
        "Σ alone",
        "ΌΣΟΣ Σ",
        "Привет, мир!",
        "МОСКВА",
        "Ελληνικά",
        "日本語のテキスト",
        "東京タワー",
        "中文字符测试",
        "한국어 텍스트",
        "ภาษาไทย",
        "עברית",
        "العربية",
        "हिन्दी",
        "বাংলা",
        "ქართული",
        "Հայերեն",
        "ᏣᎳᎩ",
        "İstanbul",
        "IİıI",
        "ǅungla ǈ ǋ",
        "😀",
        "😀😃😄",
        "a cat 🐱 and a dog 🐶",
        "👍🏽 thumbs up",
        "👨‍👩‍👧‍👦 family",
        "🇫🇷 flag",
        "❤️ heart",
        "☃ snowman ★ star ♪ note",
        "→ ← ↑ ↓",
        "∑∫∂√∞",
        "©®™",
        "€£¥₹",
        "°C °F",
        "±×÷",
        "&amp;",
        "fish &amp; chips",
        "&lt;b&gt;bold&lt;/b&gt;",
        "&quot;quoted&quot;",
        "&#39;apostrophe&#39;",
        "&#x27;hex&#x27;",
        "&eacute;t&eacute;",
        "&EACUTE;",
        "&amp;amp;",
        "&amp;amp;amp;",
        "&nbsp;space",
        "AT&T",
        "R&D",
        "Q&A",
        "&copy; 2024",
        "&copy 2024",
        "&notit;",
        "&notin;",
        "&#128512;",
        "&#0;",
        "&#150;",
        "&#xD800;",
        "&#99999999999;",
        "&#65",
        "&;",
        "&#;",
        "&#x;",
        "<b>&amp;</b>",
        "a < b &amp; c",
        "line one\n<tag> &amp; line two",
        "&amp; first\n< second &amp;",
        "&lt;",
        "tab\there",
        "\x1b[31mred\x1b[0m",
        "control\x07bell",
        "soft\u00adhyphen",
        "zero\u200dwidth\u200cjoiner",
        "bom\ufeffhere",
        "c1\u0080\u0093control\u0094",
        "line\u2028separator\u2029para",
        "Ω ohm sign \u2126",
        "\u212bngstrom sign",
        "kelvin \u212a",
        "precomposed á é ñ ü",
        "ℌ𝔢𝔩𝔩𝔬 fraktur",
        "𝐁𝐨𝐥𝐝 math bold",
        "ﬆ ligature st",
        "no_space_between,commas,and.periods",
        "mixed123letters456",
        "abc123def",
        "a1b2c3",
        "x",
        "X",
        "!",
        "'",
        "''",
        "'''s",
        "-",
        "a-",
        "-a",
        "ab",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "supercalifragilisticexpialidocious",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "antidisestablishmentarianism",
        "hippopotomonstrosesquippedaliophobia",
        "photorealistic, highly detailed, 8k, octane render, unreal engine",
        "masterpiece, best quality, ultra-detailed, (cinematic lighting:1.2)",
        "portrait of a woman, by greg rutkowski and alphonse mucha",
        "a red cube on top of a blue sphere",
        "two dogs playing in the snow",
        "a bowl of fruit on a wooden table",
        "an aerial view of a city at night",
        "a sketch of a bicycle",
        "a clipart of an airplane",
        "a painting of a lighthouse in a storm",
        "a real photo of a backpack",
        "the quick brown fox jumps over the lazy dog",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
        "Sphinx of black quartz, judge my vow.",
        "Pack my box with five dozen liquor jugs!",
        "résumé naïve façade coöperate",
        "Zürich München Köln",
        "São Paulo, Brasil",
        "Kraków Łódź Gdańsk",
        "Reykjavík Þingvellir",
        "İzmir Şanlıurfa Ğ",
        "Hà Nội Việt Nam",
        "a\tb\nc\rd\x0be\x0cf",
        "\x1c\x1d\x1e\x1f separators",
        "\u0085next line",
        "trailing punctuation...",
        "hello!!!world",
        "cat's cat’s",
        "I'M SHOUTING",
        "she said \"it's fine\"",
    ]
    word = "photograph "
    s.append(word * 80)
    s.append("a very long prompt " * 30)
    s.append(", ".join(["masterpiece", "best quality", "highres", "extremely detailed"] * 12))
    s.append("1234567890" * 12)
    s.append("😀" * 60)
    s.append("日本語" * 40)
    s.append("!?" * 100)
    s.append(" ".join(str(i) for i in range(200)))
    s.append("a " * 75)
    s.append("a " * 76)
    s.append("a " * 74)
    s.append("cat " * 74 + "dog")
    s.append("x" * 300)
    s.append("word " * 75 + "&amp;")
    s.append("A highly detailed digital painting of an ancient castle on a cliff above a stormy sea, "
             "dramatic lighting, volumetric clouds, crashing waves, seagulls, moss-covered stones, "
             "flags waving in the wind, by Caspar David Friedrich and Ivan Aivazovsky, trending on "
             "ArtStation, 8K resolution, ultra-realistic, cinematic composition, golden hour")
    s.append("It's the dog's bone, isn't it? We'll see; they'd've known. " * 8)
    s.append("Ünïcödé wörds everywhere — café, naïve, résumé, Ærøskøbing, Straße. " * 6)
    # Combinations: each word once alone, with punctuation, capitalised, with a digit.
    words = ["dog", "Dog", "DOG", "dog.", "dog,", "(dog)", "dog's", "dogs'", "2dogs", "dog2",
             "über", "Ünïcödé", "naïveté", "jalapeño", "smörgåsbord", "crème brûlée"]
    s.extend(words)
    return s


def main():
    cases = []
    with tempfile.TemporaryDirectory() as directory:
        write_hf_files(directory)
        hf = CLIPTokenizer(os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"))
        oc = SimpleTokenizer(bpe_path=GZ_PATH, context_length=CONTEXT)
        seen = set()
        for text in strings():
            assert text not in seen, repr(text)
            seen.add(text)
            open_clip_ids = oc([text])[0].tolist()
            hf_ids = hf(text, padding="max_length", max_length=CONTEXT, truncation=True)["input_ids"]
            assert len(hf_ids) == CONTEXT
            ids = oc.encode(text)
            cases.append({"text": text, "open_clip": open_clip_ids, "hf": hf_ids, "ids": ids,
                          "decode": oc.decode(ids)})
    with open(GZ_PATH, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(OUT_PATH, "w", encoding="utf-8") as f:
        json.dump({"context_length": CONTEXT, "merges_sha256": digest, "cases": cases}, f,
                  ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    differ = sum(1 for c in cases if c["hf"][:c["hf"].index(49407) + 1] != c["open_clip"][:c["open_clip"].index(49407) + 1])
    print("wrote %s: %d cases, %d where the references' ids (before padding) differ" % (OUT_PATH, len(cases), differ))


if __name__ == "__main__":
    main()
