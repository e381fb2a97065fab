"""Word lists for the rules method, as regex fragments over lower-cased text, and the helpers to join them.

Each list is a vocabulary, not a sentence: the rules in :mod:`mie.safety.rule_patterns` combine them
(an intent verb *near* a harmful target, a group *followed by* a demeaning trait), so one list serves
many phrasings. Fragments may use regex syntax for inflections (``kill(?:s|ed|ing)?``).
"""

from __future__ import annotations


def alt(*groups: list[str] | tuple[str, ...] | str) -> str:
    """A non-capturing alternation of the fragments, longest first so ``pipe bomb`` wins over ``pipe``."""
    items: list[str] = []
    for group in groups:
        items.extend([group] if isinstance(group, str) else group)
    unique = sorted(set(items), key=lambda s: (-len(s), s))
    return "(?:" + "|".join(_spaces(s) for s in unique) + ")"


def _spaces(fragment: str) -> str:
    """A space outside ``[...]`` matches any run of spaces or hyphens ("step-by-step", "step by  step")."""
    out, depth = [], 0
    for i, ch in enumerate(fragment):
        if ch == "[" and (i == 0 or fragment[i - 1] != "\\"):
            depth += 1
        elif ch == "]" and depth and fragment[i - 1] != "\\":
            depth -= 1
        out.append(r"[\s-]+" if ch == " " and not depth else ch)
    return "".join(out)


def near(first: str, second: str, gap: int = 3, forbid: str | None = None) -> str:
    """``first``, then up to ``gap`` words, then ``second``; no word in between may match ``forbid``.

    The forbidden words keep a benign object between verb and target from being skipped over:
    "shoot a *photo* of my friend" is not "shoot ... my friend".
    """
    word = rf"(?!{forbid}\b)[\w']+" if forbid else r"[\w']+"
    return rf"\b{first}\b(?:[^\w.!?;]+{word}){{0,{gap}}}?[^\w.!?;]+{second}\b"


# --- people -------------------------------------------------------------------------------------
PERSON_NOUNS = [
    "neighbou?rs?", "wife", "wives", "husbands?", "boss(?:es)?", "teachers?", "ex", "ex[- ]?(?:wife|husband)",
    "ex[- ]?(?:girlfriend|boyfriend)", "girlfriends?", "boyfriends?", "partners?", "spouses?", "fianc[ée]e?",
    "mom", "mum", "mother", "dad", "father", "parents?", "brothers?", "sisters?", "sons?", "daughters?",
    "siblings?", "roommates?", "flatmates?", "co-?workers?", "colleagues?", "classmates?", "friends?",
    "family", "landlord", "tenants?", "uncle", "aunt", "cousins?", "grand(?:ma|mother|pa|father|parents?)",
    "bab(?:y|ies)", "kids?", "child(?:ren)?", "toddlers?", "infants?", "students?", "teens?", "teenagers?",
    "minors?", "man", "men", "woman", "women", "guys?", "girls?", "boys?", "persons?", "people", "strangers?",
    "cops?", "police(?: officers?)?", "officers?", "president", "politicians?", "senators?", "mayor", "judge",
    "witness(?:es)?", "victims?", "rivals?", "enem(?:y|ies)", "bull(?:y|ies)", "employees?", "employer",
    "customers?", "clients?", "patients?", "nurses?", "doctors?", "crowds?", "civilians?", "protesters?",
    "jews?", "muslims?", "christians?", "immigrants?", "dogs?", "cats?", "pets?", "puppy", "kittens?", "horses?",
    "in-laws", "step(?:mom|dad|mother|father|son|daughter)", "crush", "coach", "priest", "pastor",
    "homeless (?:man|woman|person|people)",
]
PRONOUN_TARGETS = ["someone", "somebody", "anyone", "anybody", "everyone", "everybody", "him", "her", "them",
                   "himself", "herself", "themselves", "yourself", "myself"]
CHILD_NOUNS = ["child(?:ren)?", "kids?", "minors?", "girls?", "boys?", "teens?", "teenagers?", "students?",
               "toddlers?", "underage"]
POSSESSOR = alt(["someone", "somebody", "a stranger", "strangers", "a person", "this person", "that person",
                 "this (?:girl|guy|woman|man|user|kid)", "that (?:girl|guy|woman|man|user|kid)",
                 "people", "other people", "anyone", "a celebrity", "celebrit(?:y|ies)",
                 "(?:my|his|her|their|our|your) (?:" + "|".join(PERSON_NOUNS) + ")",
                 "(?:my|his|her|their) (?:ex|crush|coworker|neighbou?r|teacher|boss|employee)"]) + r"'s?"
OTHER_PERSON = alt(POSSESSOR, "his", "her", "their")  # a possessive naming someone else

# Objects that make a violent verb harmless (kill a *process*, shoot a *photo*, execute a *query*).
BENIGN_OBJECTS = alt([
    "process(?:es)?", "threads?", "tasks?", "jobs?", "pids?", "servers?", "services?", "daemons?", "sessions?",
    "connections?", "quer(?:y|ies)", "commands?", "scripts?", "programs?", "apps?", "applications?",
    "containers?", "pods?", "nodes?", "tabs?", "windows?", "browsers?", "terminals?", "shells?", "loops?",
    "signals?", "bugs?", "tests?", "builds?", "engines?", "motors?", "lights?", "music", "noise", "switch(?:es)?",
    "time", "mood", "vibes?", "buzz", "battery", "photos?", "pictures?", "videos?", "footage", "films?",
    "movies?", "scenes?", "shots?", "portraits?", "hoops", "basket", "pool", "breeze", "messages?", "emails?",
    "texts?", "line", "notes?", "look", "glance", "smile", "plans?", "ideas?", "deal", "games?", "match",
    "levels?", "boss fight", "characters?", "npcs?", "mobs?", "zombies?", "monsters?", "dragons?",
    "creepers?", "plants?", "weeds?", "dangerous", "toxic", "safe", "harmful", "poisonous", "bacteria", "germs?", "mold", "pests?", "orders?", "trades?", "code",
    "functions?", "requests?", "transactions?", "migrations?", "pipelines?", "workflows?", "instances?",
    "workers?", "dataframes?", "data", "columns?", "rows?", "variables?", "files?", "images?", "strings?",
    "values?", "spreadsheets?", "documents?", "hair", "nails", "cake", "dough", "steak", "turkey", "chicken",
    "vegetables?", "onions?", "wedding", "birthday", "party", "calories", "fat", "ball", "goal", "questions?",
    "a[- ]?message", "up",
])

# --- framing --------------------------------------------------------------------------------------
# Asking for a method or stating a plan: what turns a mention into a request.
INTENT = alt([
    r"how (?:do|can|could|would|should|might|will) (?:i|we|you|one|someone|u)", "how to", "how i can",
    r"ways? (?:to|of|i can)", r"(?:best|easiest|quickest|fastest|simplest|cheapest|safest) (?:way|method)s?",
    "help me", "teach me", "show me", "tell me how", "explain how", "instructions", "step by step",
    "walk me through", "give me a way", "what should i", "which .{1,30} (?:can|should|would) i",
    r"guide (?:to|for|on)", "tutorial", r"i (?:want|need|plan|intend|wish) to(?! know| understand| learn| ask| make sure)",
    r"i(?:'m| am) (?:going|gonna) to",
    "i(?:'m| am) gonna", "i wanna", "i(?:'ll| will)", "let's", "planning to", r"tips (?:for|on)",
    r"what(?:'s| is) the best way", r"where can i (?:get|buy|find)", "give me", "write me", "i'd like to",
    "can you help", "recipe for", "how much .{1,30} to", "how many .{1,30} to",
    r"(?:write|create|code|build|make|give) (?:me )?(?:a|an|some) (?:\w+ )?(?:script|program|tool|bot|code|malware)",
])
EVASION = alt([
    r"without (?:getting caught|anyone (?:knowing|noticing|finding out|suspecting)|being (?:caught|detected|"
    r"traced|noticed|seen|identified)|leaving (?:any |a )?(?:trace|traces|evidence|marks|fingerprints))",
    "get away with", "untraceable", "undetectable", r"cover (?:it|this|that) up", "hide the body",
    r"dispose of (?:a|the) body", r"so (?:no one|nobody|no-one) (?:knows|finds out|can tell|notices)",
    r"(?:not|never|won't) get caught", "look like an accident", "without a trace", "no witnesses",
    r"(?:won't|doesn't|does not|wouldn't|will not) show up (?:in|on) (?:an? )?(?:autopsy|toxicology|tox screen)",
    r"(?:can't|cannot|won't) be traced", r"without leaving (?:any )?(?:bruises|marks|evidence|a trace)",
    r"(?:police|cops|forensics|investigators)(?: \w+){0,2} (?:can't|cannot|won't|don't) (?:detect|find|trace|tell|"
    r"photograph|prove)", r"get rid of (?:the|a) body", r"(?:no one|nobody) (?:ever )?finds? (?:it|out|the body)",
    r"destroy (?:the )?evidence", r"make (?:it|this) look like (?:an accident|suicide|natural causes|self[- ]defen[cs]e)",
    r"claim it was an accident",
])
NEGATION = (r"(?:\bnot|\bnever|n't|\bno|\brefuse to|\bstop(?:ping)?|\bprevent(?:ing)?|\bavoid(?:ing)?|\bagainst"
            r"|\bwithout)")

# Contexts that make a match less likely to be a real request; each softens the score.
PROTECTIVE = alt([
    "prevent\\w*", "protect\\w*", "mitigat\\w*", "simulat\\w*", "training", "ethical\\w*", "defend", "self[- ]defen[cs]e", "hotline", "helpline",
    r"help (?:someone|a friend|my friend|a person|people|them|him|her) who", "cope", "coping",
    r"support (?:groups?|for|someone|a friend|victims|survivors)",
    "therapy", "therapist", "recover(?:y|ing)?", "warning signs", "signs of", "safety tips", "stay safe",
    "report(?:ing)?", "detect(?:ing|ion)?", r"recogni[sz]e", "spot", "avoid being", "survive", "first aid",
    "antidote", "poison control", "what to do if", "symptoms of", "is it illegal", "legal consequences",
    "penalt(?:y|ies) for", "safe from", "awareness", "training to",
])
FICTION = alt(["novel", "story", "screenplay", "fiction", "fictional", "book", "fantasy", "short story", "poem",
               "movie", "film", "portray\\w*", "depict\\w*",
               "plot", "murder mystery", "thriller", "villain", "fanfic", "chapter", "scene where"])
GAME = alt(["in the game", "video game", "board game", "minecraft", "fortnite", "skyrim", "elden ring",
            "call of duty", "gta", "zelda", "pok[eé]mon", "roblox", "valorant", "d&d", "dnd", "dungeons",
            "final boss", "boss fight", "npcs?", "my character", "chess", "mafia game", "werewolf", "among us",
            "the sims", "dark souls", "league of legends", "overwatch", "halo", "rpg", "level \\d+"])
HISTORY = alt(["history of", "historical", "historically", r"in (?:1[5-9]|20)\d\d", "during (?:ww1|ww2|wwi|wwii|"
               "world war|the war|the cold war)", "manhattan project", "hiroshima", "nagasaki", "documentary",
               "what happened", "the news", "news report", "according to", "essay on", "research on"])
DETAIL = alt(["step by step", "detailed instructions", "exact (?:amounts|quantities|steps|measurements)",
              "recipe", "ingredients", "quantities", "materials list", "precise instructions"])
QUESTION_START = alt(["is it true", "is it", "are", "is", "do", "does", "did", "was", "were", "can", "could",
                      "why do", "why does", "why did", "what", "how come"])
DEBUNK = alt([
    "myth", "myths", "debunk(?:ed|ing|s)?", "refute", "disprove", "misinformation", "disinformation",
    r"conspiracy theor(?:y|ies)", "no evidence", "not true", "isn't true", "is false", "untrue", "fact[- ]check",
    r"why (?:do|would) (?:some )?people believe", "is it true", "misconception", "stereotypes?", "tropes?",
    "prejudice", "bias(?:ed)?", "racist to", "sexist to", r"wrong to (?:say|think|assume|believe)",
    r"(?:people|some|they|critics) (?:say|claim|think|believe)", "counter", "respond to", "hoax claims",
    "discrimination", "is harmful", "offensive", "not supported", "the claim that", "investigated", "no link",
    "disproven", "unfounded", "baseless", r"(?:says|claims|claimed|insists|told me|thinks|believes) (?:that )?",
])


def spec(principle: str, reason: str, pattern: str, score: float, intent: float | None = None, **options) -> dict:
    """One rule as data (compiled by :class:`mie.safety.rules.RuleMethod`).

    ``score`` is the belief on a match, ``intent`` the belief when a request or plan ("how do I",
    "help me", "I want to") stands near it. Options: ``negatable`` (a "not"/"never" just before
    softens it, default True), ``soften`` (benign contexts soften it, default True), ``needs`` /
    ``unless`` (a regex that must / must not occur anywhere in the text), ``check`` (a function
    that validates the matched text, e.g. a Luhn check), ``question`` (a question softens it).
    """
    return {"principle": principle, "reason": reason, "pattern": pattern, "score": score, "intent": intent,
            **options}
