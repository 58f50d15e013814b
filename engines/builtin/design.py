"""Rule-based voice design for espeak-ng: a free-text description becomes espeak parameters.

espeak has no model that could read a description, so words are looked up in tables: gender and
age pick a variant, pace and mood words nudge the rate, pitch words the pitch, expressiveness the
pitch range, and accent or language words pick the voice. Pure and deterministic; it names shipped
voices and variants as data and never loads the library (the tests check the names against it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TypeVar

__all__ = ["DesignedParams", "design_params", "DEFAULT_VOICE"]

DEFAULT_VOICE = "gmw/en-US"
BASE_RATE, BASE_PITCH, BASE_PITCH_RANGE = 175, 50, 50  # espeak's own defaults
RATE_LIMITS, PITCH_LIMITS = (80, 450), (0, 100)


@dataclass(frozen=True)
class DesignedParams:
    voice: str  # an espeak voice identifier, e.g. "gmw/en-US"
    variant: str | None  # a file in espeak-ng-data/voices/!v, e.g. "f3"
    rate: int  # words per minute
    pitch: int  # 0..100
    pitch_range: int  # 0..100
    notes: tuple[str, ...]  # how each word was read, for the user


@dataclass(frozen=True)
class _Effect:
    meaning: str = ""
    rate: int = 0
    pitch: int = 0
    pitch_range: int = 0
    gender: str | None = None  # "female" / "male"
    age: str | None = None  # "child" / "young" / "middle-aged" / "old"
    style: str | None = None  # "robot" / "klatt"


@dataclass(frozen=True)
class _Accent:
    voice: str
    label: str
    family: str  # accents of one language refine each other instead of clashing
    specific: int  # 0: only if nothing else is named; a higher number refines a lower one
    caveat: str = ""


_T = TypeVar("_T")


def _words(spec: str, value: _T) -> dict[str, _T]:
    return {word: value for word in spec.split(",")}


_EFFECTS: dict[str, _Effect] = {
    # gender
    **_words("woman,women,female,lady,ladies,feminine,she,her,gal,mother,mom,mum,daughter,sister,"
             "aunt,queen,actress,girlfriend,wife,businesswoman",
             _Effect("female", gender="female")),
    **_words("man,men,male,guy,gentleman,gentlemen,masculine,he,him,his,father,dad,son,brother,uncle,"
             "king,dude,fellow,husband,boyfriend,sir,businessman",
             _Effect("male", gender="male")),
    # age (with the gender some of them imply)
    **_words("girl,little girl", _Effect("a girl", rate=10, pitch=30, pitch_range=10, gender="female", age="child")),
    **_words("boy,little boy", _Effect("a boy", rate=10, pitch=30, pitch_range=10, gender="male", age="child")),
    **_words("child,kid,kids,toddler,children,childlike,childish",
             _Effect("a child", rate=10, pitch=30, pitch_range=10, age="child")),
    **_words("young,youthful,teen,teenage,teenager,adolescent,student",
             _Effect("young", rate=10, pitch=10, age="young")),
    **_words("lad", _Effect("a young man", rate=10, pitch=10, gender="male", age="young")),
    **_words("middle aged,middle age,mature,adult,grown up",
             _Effect("middle-aged", rate=-5, pitch=-5, age="middle-aged")),
    **_words("old,elderly,aged,senior,older,ancient,aging,ageing,retired",
             _Effect("elderly", rate=-20, pitch=-5, age="old")),
    **_words("grandmother,grandma,granny,old lady,old woman",
             _Effect("an elderly woman", rate=-20, pitch=-5, gender="female", age="old")),
    **_words("grandfather,grandpa,granddad,grandad,old man",
             _Effect("an elderly man", rate=-20, pitch=-5, gender="male", age="old")),
    # pitch
    **_words("deep,deeper,bass,booming,low pitched,low voiced", _Effect("deeper", pitch=-25)),
    **_words("low,lower,husky,gruff,baritone", _Effect("lower", pitch=-15)),
    **_words("high,higher,high pitched,tenor,soprano", _Effect("higher", pitch=25)),
    **_words("squeaky,shrill,piercing,chipmunk", _Effect("much higher", pitch=40)),
    # pace and mood
    **_words("slow,slowly,slower,leisurely,unhurried,drawling", _Effect("slower", rate=-35)),
    **_words("measured,deliberate,careful,thoughtful", _Effect("measured", rate=-25)),
    **_words("fast,faster,quick,quickly,speedy,brisk,fast paced", _Effect("faster", rate=45)),
    **_words("rapid,rapidly,hurried,rushed,frantic", _Effect("much faster", rate=70)),
    **_words("calm,relaxed,soothing,gentle,soft,softly,peaceful,serene,mellow",
             _Effect("calm", rate=-20, pitch_range=-15)),
    **_words("sleepy,tired,drowsy,weary", _Effect("sleepy", rate=-35, pitch=-5, pitch_range=-20)),
    **_words("sad,gloomy,melancholy,melancholic,sombre,somber,depressed",
             _Effect("sad", rate=-25, pitch=-5, pitch_range=-20)),
    **_words("serious,stern,formal,authoritative,grave", _Effect("serious", rate=-10, pitch=-5, pitch_range=-15)),
    **_words("energetic,high energy,excited,excitable,enthusiastic,upbeat,bubbly,peppy",
             _Effect("energetic", rate=25, pitch=5, pitch_range=25)),
    **_words("cheerful,happy,friendly,warm,joyful,bright", _Effect("cheerful", rate=10, pitch=5, pitch_range=20)),
    **_words("nervous,anxious,jittery,worried", _Effect("nervous", rate=25, pitch=5, pitch_range=10)),
    **_words("angry,furious,irritated,annoyed", _Effect("angry", rate=15, pitch=-5, pitch_range=20)),
    # expressiveness
    **_words("monotone,monotonous,deadpan", _Effect("monotone", pitch_range=-45)),
    **_words("flat,dull,bored,boring,unemotional,emotionless", _Effect("flat", pitch_range=-35)),
    **_words("lively,animated,expressive,dynamic,vivid", _Effect("expressive", pitch_range=30)),
    **_words("dramatic,theatrical,sing song,singsong,melodic,musical",
             _Effect("dramatic", rate=-10, pitch_range=40)),
    # synthesis style
    **_words("robot,robotic,mechanical,synthetic,computer,computerized,computerised,android,cyborg,machine,"
             "artificial,digital", _Effect("robotic", pitch_range=-20, style="robot")),
    **_words("klatt,retro,vintage,old school,oldschool,formant", _Effect("retro synthesizer", style="klatt")),
}

_LATIN_CAVEAT = "English text is read with {} spelling rules, a strong accent"
_OTHER_SCRIPT_CAVEAT = "made for {} text; Latin-script words fall back to English rules"


def _accent(spec: str, voice: str, label: str, family: str, specific: int = 1, caveat: str = "",
            script: str = "latin") -> dict[str, _Accent]:
    if not caveat and family != "en":
        caveat = (_LATIN_CAVEAT if script == "latin" else _OTHER_SCRIPT_CAVEAT).format(label)
    return _words(spec, _Accent(voice, label, family, specific, caveat))


_ACCENTS: dict[str, _Accent] = {
    **_accent("english", "gmw/en", "British English", "en", specific=0),
    **_accent("british,britain,england,uk,brit", "gmw/en", "British English", "en"),
    **_accent("received pronunciation,rp,posh,upper class,queen english,bbc", "gmw/en-GB-x-rp",
              "English, Received Pronunciation", "en", specific=2),
    **_accent("scottish,scots,scotland,glaswegian", "gmw/en-GB-scotland", "Scottish English", "en", specific=2),
    **_accent("lancashire,lancaster,northern english", "gmw/en-GB-x-gbclan", "Lancaster English", "en", specific=2),
    **_accent("west midlands,brummie,birmingham", "gmw/en-GB-x-gbcwmd", "West Midlands English", "en", specific=2),
    **_accent("irish,ireland", "gmw/en", "British English", "en",
              caveat="espeak ships no Irish English accent, so British English stands in; "
                     "say 'Irish Gaelic' for the Gaelic voice cel/ga"),
    **_accent("australian,australia,aussie,new zealand,kiwi", "gmw/en", "British English", "en",
              caveat="espeak ships no Australian or New Zealand accent, so British English stands in"),
    **_accent("american,america,usa,united states", "gmw/en-US", "American English", "en"),
    **_accent("canadian,canada", "gmw/en-US", "American English", "en",
              caveat="espeak ships no Canadian accent, so American English stands in"),
    **_accent("new york,new yorker,nyc,brooklyn", "gmw/en-US-nyc", "New York English", "en", specific=2),
    **_accent("caribbean,jamaican,jamaica,west indian", "gmw/en-029", "Caribbean English", "en", specific=2),
    **_accent("indian,india,hindi", "inc/hi", "Hindi", "hi",
              caveat="espeak ships no Indian English voice; the Hindi voice speaks Hindi text and reads "
                     "Latin-script words with English rules"),
    **_accent("welsh,wales", "cel/cy", "Welsh", "cy"),
    **_accent("irish gaelic,gaelic", "cel/ga", "Irish Gaelic", "ga"),
    **_accent("scottish gaelic,scots gaelic", "cel/gd", "Scottish Gaelic", "gd", specific=2),
    **_accent("german,germany,austrian,bavarian", "gmw/de", "German", "de"),
    **_accent("dutch,netherlands,holland,flemish", "gmw/nl", "Dutch", "nl"),
    **_accent("afrikaans,south african", "gmw/af", "Afrikaans", "af"),
    **_accent("french,france,parisian", "roa/fr", "French", "fr"),
    **_accent("belgian", "roa/fr-BE", "Belgian French", "fr", specific=2),
    **_accent("spanish,spain,castilian", "roa/es", "Spanish", "es"),
    **_accent("mexican,mexico,latin american,latino,latina,colombian,argentinian", "roa/es-419",
              "Latin American Spanish", "es", specific=2),
    **_accent("catalan", "roa/ca", "Catalan", "ca"),
    **_accent("italian,italy", "roa/it", "Italian", "it"),
    **_accent("portuguese,portugal", "roa/pt", "Portuguese", "pt"),
    **_accent("brazilian,brazil", "roa/pt-BR", "Brazilian Portuguese", "pt", specific=2),
    **_accent("romanian", "roa/ro", "Romanian", "ro"),
    **_accent("swedish,sweden", "gmq/sv", "Swedish", "sv"),
    **_accent("norwegian,norway", "gmq/nb", "Norwegian", "nb"),
    **_accent("danish,denmark", "gmq/da", "Danish", "da"),
    **_accent("icelandic", "gmq/is", "Icelandic", "is"),
    **_accent("finnish,finland", "urj/fi", "Finnish", "fi"),
    **_accent("hungarian", "urj/hu", "Hungarian", "hu"),
    **_accent("polish,poland", "zlw/pl", "Polish", "pl"),
    **_accent("czech", "zlw/cs", "Czech", "cs"),
    **_accent("turkish,turkey", "trk/tr", "Turkish", "tr"),
    **_accent("indonesian", "poz/id", "Indonesian", "id"),
    **_accent("vietnamese", "aav/vi", "Vietnamese", "vi"),
    **_accent("swahili", "bnt/sw", "Swahili", "sw"),
    **_accent("russian,russia", "zle/ru", "Russian", "ru", script="other"),
    **_accent("ukrainian", "zle/uk", "Ukrainian", "uk", script="other"),
    **_accent("greek,greece", "grk/el", "Greek", "el", script="other"),
    **_accent("arabic,arab", "sem/ar", "Arabic", "ar", script="other"),
    **_accent("hebrew,israeli", "sem/he", "Hebrew", "he", script="other"),
    **_accent("persian,farsi,iranian", "ira/fa", "Persian", "fa", script="other"),
    **_accent("chinese,mandarin", "sit/cmn", "Mandarin Chinese", "zh", script="other"),
    **_accent("cantonese,hong kong", "sit/yue", "Cantonese", "zh", specific=2, script="other"),
    **_accent("korean,korea", "ko", "Korean", "ko", script="other"),
    **_accent("thai", "tai/th", "Thai", "th", script="other"),
    **_accent("japanese,japan", "jpx/ja", "Japanese", "ja",
              caveat="made for Japanese text; it spells Latin-script words out letter by letter"),
}

_INTENSIFIERS = {"very": 1.5, "really": 1.5, "extremely": 2.0, "super": 1.7, "quite": 1.2, "rather": 1.2,
                 "so": 1.3, "incredibly": 2.0, "much": 1.3, "slightly": 0.5, "somewhat": 0.6, "bit": 0.5,
                 "little": 0.5, "mildly": 0.5}
_NEGATIONS = {"not", "no", "never", "without", "non"}
_NEGATION_GLUE = {"too", "overly", "that", "a", "an", "the", "all", "at", "so", "more"}  # "not too fast"
_FILLER = set("a an the and or but with of in on at to for from like who that which is are be sounds sound "
              "sounding voice voices voiced speaker speaking speaks talks talking talker tone toned accent "
              "accented person someone somebody narrator narrating reads reading pace paced pitch pitched "
              "speech synth synthesizer synthesiser style kind sort type one too more overly all so please make "
              "give me i want something".split())
_LONGEST_PHRASE = max(len(key.split()) for key in (*_EFFECTS, *_ACCENTS))


def _tokens(description: str) -> list[str]:
    text = description.lower().replace("'s ", " ").replace("\u2019s ", " ")
    return re.findall(r"[^\W_]+(?:'[^\W_]+)?", text.replace("-", " ").replace("_", " "))


def _quote(words: list[str]) -> str:
    return " + ".join(f"'{w}'" for w in words)


def _clamp(what: str, value: int, limits: tuple[int, int], unit: str, notes: list[str]) -> int:
    clamped = min(max(value, limits[0]), limits[1])
    if clamped != value:
        notes.append(f"{what} {value}{unit} is outside espeak's {limits[0]}..{limits[1]}; used {clamped}{unit}")
    return clamped


def _variant(gender: str | None, age: str | None, style: str | None) -> tuple[str | None, str, tuple[str, ...]]:
    """(variant, why, which traits decided it)."""
    if style == "robot" and gender == "female":
        return "anikaRobot", "a robotic female voice", ("style", "gender")
    if style == "robot":
        return "robosoft", "a robotic voice", ("style",)
    if style == "klatt":
        return "klatt", "the Klatt formant synthesizer", ("style",)
    if age == "old":
        if gender == "female":
            return "grandma", "an elderly woman", ("age", "gender")
        return "grandpa", "an elderly voice", ("age", "gender") if gender else ("age",)
    if age == "child":
        if gender == "male":
            return "m3", "a male voice; the child's pitch comes from the pitch setting", ("age", "gender")
        return "f5", "the highest-pitched built-in voice", ("age", "gender") if gender else ("age",)
    if gender:
        return ("f3", "a female voice", ("gender",)) if gender == "female" else ("m3", "a male voice", ("gender",))
    return None, "", ()


def design_params(description: str) -> DesignedParams:
    """Map a voice description onto espeak parameters, explaining each choice in `notes`."""
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, not {type(description).__name__}")
    if not description.strip():
        raise ValueError("the voice description is empty; describe the voice, e.g. "
                         "'a calm elderly British woman' or 'fast, high-pitched robot'")
    tokens = _tokens(description)
    notes: list[str] = []
    unknown: list[str] = []
    rate, pitch, pitch_range = BASE_RATE, BASE_PITCH, BASE_PITCH_RANGE
    traits: dict[str, tuple[str, str]] = {}  # "gender"/"age"/"style" -> (value, word that set it)
    accent: tuple[_Accent, str] | None = None
    weak_accent: tuple[_Accent, str] | None = None
    scale, negated = 1.0, None
    i = 0
    while i < len(tokens):
        for size in range(min(_LONGEST_PHRASE, len(tokens) - i), 0, -1):
            phrase = " ".join(tokens[i:i + size])
            if phrase in _EFFECTS or phrase in _ACCENTS:
                break
        else:
            phrase, size = tokens[i], 1
        i += size
        if phrase not in _EFFECTS and phrase not in _ACCENTS:
            if phrase in _INTENSIFIERS:
                scale *= _INTENSIFIERS[phrase]
            elif phrase in _NEGATIONS:
                negated = phrase
            elif phrase in _FILLER:
                negated = negated if phrase in _NEGATION_GLUE else None
            else:
                unknown.append(phrase)
                scale, negated = 1.0, None
            continue
        if negated:
            notes.append(f"'{negated} {phrase}' -> ignored: a negated word changes nothing")
            scale, negated = 1.0, None
            continue
        if phrase in _ACCENTS:
            found = _ACCENTS[phrase]
            if found.specific == 0:
                weak_accent = weak_accent or (found, phrase)
            elif accent is None:
                accent = (found, phrase)
            elif accent[0].family == found.family and found.specific > accent[0].specific:
                accent = (found, phrase)  # "portuguese ... brazilian": the more specific one wins
            elif accent[0].family == found.family and (found.specific < accent[0].specific
                                                       or found.voice == accent[0].voice):
                pass  # agrees with the accent already chosen
            else:
                notes.append(f"'{phrase}' ignored: the voice was already chosen from '{accent[1]}'")
            scale = 1.0
            continue
        effect = _EFFECTS[phrase]
        shown = phrase
        scale = min(max(scale, 0.25), 2.5)
        if scale != 1.0:
            effect = replace(effect, rate=round(effect.rate * scale), pitch=round(effect.pitch * scale),
                             pitch_range=round(effect.pitch_range * scale))
            shown = f"{phrase} (x{scale:g})"
        scale = 1.0
        for trait in ("gender", "age", "style"):
            value = getattr(effect, trait)
            if value is None:
                continue
            if trait not in traits:
                traits[trait] = (value, phrase)
            elif traits[trait][0] != value:
                notes.append(f"'{phrase}' as {trait} ignored: already {traits[trait][0]} from '{traits[trait][1]}'")
        changes = [f"{name} {delta:+d}{unit}" for name, delta, unit in
                   (("rate", effect.rate, " wpm"), ("pitch", effect.pitch, ""), ("pitch range", effect.pitch_range, ""))
                   if delta]
        rate, pitch, pitch_range = rate + effect.rate, pitch + effect.pitch, pitch_range + effect.pitch_range
        if changes:  # gender, age and style words are explained by the variant note below
            notes.append(f"'{shown}' -> {effect.meaning}: {', '.join(changes)}")

    gender, age, style = (traits.get(t, (None, ""))[0] for t in ("gender", "age", "style"))
    variant, why, deciding = _variant(gender, age, style)
    if variant:
        notes.append(f"{_quote(list(dict.fromkeys(traits[t][1] for t in deciding)))} -> variant {variant} ({why})")
    if style == "klatt" and gender == "female":
        pitch += 25
        notes.append(f"'{traits['gender'][1]}' -> pitch +25: the Klatt variant has no female form")

    chosen = accent or weak_accent
    if chosen:
        found, word = chosen
        notes.append(f"'{word}' -> voice {found.voice} ({found.label})" + (f"; {found.caveat}" if found.caveat else ""))
        voice = found.voice
    else:
        voice = DEFAULT_VOICE
        notes.append(f"no accent or language named -> voice {DEFAULT_VOICE} (American English)")

    rate = _clamp("rate", rate, RATE_LIMITS, " wpm", notes)
    pitch = _clamp("pitch", pitch, PITCH_LIMITS, "", notes)
    pitch_range = _clamp("pitch range", pitch_range, PITCH_LIMITS, "", notes)
    if unknown:
        notes.append("not understood: " + ", ".join(f"'{w}'" for w in dict.fromkeys(unknown)))
    return DesignedParams(voice=voice, variant=variant, rate=rate, pitch=pitch, pitch_range=pitch_range,
                          notes=tuple(notes))
