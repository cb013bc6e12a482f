"""Style codes and weak model names, from the free text that product pages carry.

Both are pure functions of strings. A weak model name is a suggestion for staff to confirm
("Nike Dunk Low Retro" -> "Nike Dunk Low"), never a label by itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Nike's style code: six letters/digits, a dash, a three-digit colour code ("DD1391-100",
# "136064-122"). Found anywhere in a string, the six characters right before the dash are
# taken, which strips brand prefixes such as "jb850000-116" -> "850000-116".
_STYLE_CODE = re.compile(r"([A-Z0-9]{6})-(\d{3})(?!\d)", re.IGNORECASE)
# In prose a space sometimes replaces the dash, but only right after a "Style" label.
_STYLE_LABEL = re.compile(
    r"\b(?:style(?:\s*(?:code|#|no\.?|number))?|sku)\s*[:#]?\s*([A-Z0-9][A-Z0-9 _-]{8,16})",
    re.IGNORECASE,
)
_SPACED_CODE = re.compile(r"([A-Z0-9]{6})[\s_](\d{3})(?!\d)", re.IGNORECASE)
_MIN_DIGITS_IN_STYLE = 4  # "DD1391", "136064": words like "retro1" are not style codes


def _valid_style(prefix: str) -> bool:
    return sum(c.isdigit() for c in prefix) >= _MIN_DIGITS_IN_STYLE


def _unique(codes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(codes))


def find_style_codes(text: str | None) -> list[str]:
    """Every style code in ``text``, upper case, in order of appearance, without repeats."""
    if not text:
        return []
    found = [
        f"{m.group(1).upper()}-{m.group(2)}"
        for m in _STYLE_CODE.finditer(text)
        if _valid_style(m.group(1))
    ]
    return _unique(found)


def find_labelled_style_codes(text: str | None) -> list[str]:
    """Style codes written after a label ("Style: DD1391-100", "Style Code DD1391 100")."""
    if not text:
        return []
    found: list[str] = []
    for match in _STYLE_LABEL.finditer(text):
        found += find_style_codes(_SPACED_CODE.sub(r"\1-\2", match.group(1)))
    return _unique(found)


def normalise_style_code(raw: object) -> str | None:
    """A field that should hold exactly one style code, cleaned; ``None`` if it holds none.

    Accepts surrounding spaces, lower case and a space or underscore instead of the dash.
    """
    if not isinstance(raw, str):
        return None
    text = raw.strip().replace("_", "-")
    text = re.sub(r"^([A-Za-z0-9]{6})\s+(\d{3})$", r"\1-\2", text)
    codes = find_style_codes(text)
    if len(codes) != 1 or len(text) > len(codes[0]) + 4:
        return None
    return codes[0]


# --- weak model names ---------------------------------------------------------------------

# Words that sell a release but do not change the silhouette. Compared case-insensitively
# as whole words. Singular "shoe" and "trainer" are kept: "Moon Shoe", "Air Trainer 1".
MARKETING_WORDS = frozenset(
    {
        "retro",
        "og",
        "premium",
        "prm",
        "se",
        "qs",
        "sp",
        "nrg",
        "lx",
        "lv8",
        "essential",
        "ess",
        "vintage",
        "shoes",
        "sneaker",
        "sneakers",
        "trainers",
        "unisex",
        "mens",
        "womens",
        "wmns",
        "gs",
        "ps",
        "td",
        "bg",
        "easyon",
        "flyease",
        "sample",
        "gore-tex",
        "gtx",
    }
)
_MARKETING_PHRASES = re.compile(
    r"\b(?:next\s+nature|by\s+you|(?:big|little|older|younger)\s+kids?'?s?|grade\s+school|"
    r"pre[-\s]?school|baby\s*(?:&|and|/)\s*toddlers?|toddlers?|infants?|"
    r"(?:men|women|kid|boy|girl)s?'s?|(?:men|women|kid|boy|girl)s?')(?=\s|$|[^\w'])",
    re.IGNORECASE,
)
# "White/Black", "Sail/Dark Mocha/Black": a colourway written into the title, without a dash.
_SLASHED_COLOURS = re.compile(r"\s\S*[^\W\d]/[^\W\d].*$")  # not "Air Max 1/97"
# "Nike Air Jordan 1", "Jordan Air Jordan 1" (a vendor in front), "Nike x Travis Scott Air
# Jordan 1 Low": the model starts at "Air Jordan".
_BEFORE_AIR_JORDAN = re.compile(r"^.*?\s(?=Air\s+Jordan\b)", re.IGNORECASE)
# "Off-White x Nike Dunk Low", "sacai x Nike LD Waffle": the model starts at the brand.
_COLLAB_BEFORE_BRAND = re.compile(r"^.*?\s[x×]\s+(?=(?:Nike|Jordan|Air)\b)", re.IGNORECASE)
_YEAR_MARK = re.compile(r"(?<!\w)['’‘]\d{2}\b")  # '07, '77, '86
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|'[^']*'")
_BRACKETED = re.compile(r"\([^)]*\)|\[[^\]]*\]|\{[^}]*\}")
_COLOUR_SUFFIX = re.compile(r"\s+[-–—|/]\s+.*$")
_ACRONYMS = frozenset({"SB", "ACG", "TN", "KD", "GT", "ISPA", "SFB", "AF1", "ZM", "PG", "NBA"})
# Spellings of one line that would otherwise split a model in two.
_ALIASES = (
    (re.compile(r"\bAF-?1\b", re.IGNORECASE), "Air Force 1"),
    (re.compile(r"\bAir Force 1 Low\b", re.IGNORECASE), "Air Force 1"),
    (re.compile(r"\bAJ\s?(\d{1,2})\b"), r"Air Jordan \1"),
)
# Brands that already name themselves inside model names ("Air Jordan 4" is a Jordan).
_SUB_BRANDS = {"nike": ("nike", "jordan", "air jordan"), "jordan": ("jordan", "air jordan")}


def _title_case_word(word: str) -> str:
    if word.upper() in _ACRONYMS or any(c.isdigit() for c in word):
        return word.upper()
    return word[:1].upper() + word[1:].lower()


def _brand_name(brand: str | None) -> str | None:
    if not brand or not brand.strip():
        return None
    words = brand.split()
    if all(w.isupper() or w.islower() for w in words):
        return " ".join(_title_case_word(w) for w in words)
    return " ".join(words)


def _with_brand(name: str, brand: str | None) -> str:
    """Prefix the brand unless the name already starts with it or with one of its sub-brands."""
    brand_name = _brand_name(brand)
    if brand_name is None:
        return name
    lowered = name.lower()
    prefixes = _SUB_BRANDS.get(brand_name.lower(), (brand_name.lower(),))
    if any(lowered == p or lowered.startswith(p + " ") for p in prefixes):
        return name
    if lowered.startswith(brand_name.lower() + " "):
        return name
    return f"{brand_name} {name}"


def weak_model_name(title: str | None, brand: str | None = None) -> str | None:
    """The sneaker model that a product title names, without its marketing words.

    ``brand`` (e.g. a Shopify vendor, "Nike" for Nike's own pages) is put in front when the
    title does not start with it. Returns ``None`` when nothing is left of the title.

    >>> weak_model_name("Nike Dunk Low Retro")
    'Nike Dunk Low'
    >>> weak_model_name("Air Force 1 '07 Premium (Black)", brand="NIKE")
    'Nike Air Force 1'
    >>> weak_model_name("Air Jordan 1 Retro High OG", brand="Jordan")
    'Air Jordan 1 High'
    """
    if not title or not isinstance(title, str):
        return None
    text = unicodedata.normalize("NFKC", title).replace("’", "'").replace("‘", "'")
    text = " ".join(text.split())
    shouting = sum(c.isupper() for c in text) > 0 and not any(c.islower() for c in text)
    for code in find_style_codes(text):
        text = re.sub(re.escape(code), " ", text, flags=re.IGNORECASE)
    text = _COLOUR_SUFFIX.sub("", text)
    text = _MARKETING_PHRASES.sub(" ", text)  # before the colours: "Baby/Toddler" is no colour
    text = _SLASHED_COLOURS.sub("", text)
    text = _BRACKETED.sub(" ", text)
    text = _YEAR_MARK.sub(" ", text)
    text = _QUOTED.sub(" ", text)
    text = _BEFORE_AIR_JORDAN.sub("", text)
    text = _COLLAB_BEFORE_BRAND.sub("", text)
    words = [w.strip(",;:.!/'\"-") for w in text.split()]
    words = [w for w in words if w and w.lower() not in MARKETING_WORDS]
    if len(words) > 1 and words[0] in ("W", "M"):  # "W Nike Dunk Low": women's / men's
        words = words[1:]
    if shouting:
        words = [_title_case_word(w) for w in words]
    name = " ".join(words)
    for pattern, replacement in _ALIASES:
        name = pattern.sub(replacement, name)
    name = re.sub(r"^Jordan (\d{1,2})\b", r"Air Jordan \1", name)
    name = " ".join(name.split())
    if not name:
        return None
    return _with_brand(name, brand)
