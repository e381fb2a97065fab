"""Rules for harm_prevention and privacy, as data (see :func:`mie.safety.lexicons.spec`).

The shape of every strong rule is *an intent verb near a harmful target*: "poison" counts only with
a person or their food as object, "make" only with an explosive, "find" only with someone else's
address. A word alone (a weapon's name, "phishing") is a weak cue, never a flag by itself.
"""

from __future__ import annotations

from mie.safety.lexicons import (
    BENIGN_OBJECTS,
    CHILD_NOUNS,
    EVASION,
    OTHER_PERSON,
    PERSON_NOUNS,
    POSSESSOR,
    PRONOUN_TARGETS,
    alt,
    near,
    spec,
)
from mie.safety.pii import CARD, SSN, luhn_valid

H, P = "harm_prevention", "privacy"
SEP = r"[^\w.!?;]+"  # the space between two words of one clause
WORDS = rf"(?:{SEP}[\w']+)"  # one more word of the same clause

# A person as the object of a verb; not a possessor ("my friend's *photo*") nor a modifier ("child *process*").
NOT_A_MODIFIER = (rf"(?!['’]s?\b)(?!{SEP}(?:(?:a|an|the|some){SEP})?{BENIGN_OBJECTS}\b)"
                  r"(?![\s-]+(?:feelings|pride|chances?|ego|career|business|sales|numbers|score|record)\b)")
NOT_ME = alt(PERSON_NOUNS, [p for p in PRONOUN_TARGETS if p != "myself"]) + NOT_A_MODIFIER
NON_SELF = alt([p for p in PRONOUN_TARGETS if p not in {"myself", "yourself"}], PERSON_NOUNS) + NOT_A_MODIFIER

VIOLENT = alt([
    "kill(?:s|ing)?", "murder(?:s|ing)?", "poison(?:s|ing)?", "stab(?:s|bing)?", "shoot(?:s|ing)?",
    "strangl(?:e|es|ing)", "chok(?:e|es|ing)", "hurt(?:s|ing)?", "harm(?:s|ing)?", "injur(?:e|es|ing)", "maim",
    "attack(?:s|ing)?", "assault(?:s|ing)?", "kidnap(?:s|ping)?", "abduct(?:s|ing)?", "tortur(?:e|es|ing)",
    "drown(?:s|ing)?", "suffocat(?:e|es|ing)", "smother(?:s|ing)?", "behead", "execute", "assassinat(?:e|ing)",
    "slaughter", "burn (?:alive)", "run over", "punch(?:es|ing)?", "slap(?:s|ping)?", "rap(?:e|es|ing)",
    "molest(?:s|ing)?", "mutilat(?:e|ing)", "dismember", "lynch", "bludgeon", "massacre", "beat up",
    "beat (?:him|her|them) up", "cripple", "disfigure", "throw acid on",
    "roofie", "sedate", "drug", "knock (?:\\w+ )?out", "lure", "ambush", "push (?:\\w+ ){0,3}(?:down|off)",
    "hit (?:\\w+ ){0,3}with (?:my|a) (?:car|truck|bat)", "injure whoever", "tamper with", "feed",
])
COERCE = alt(["bully(?:ing)?", "harass(?:ing)?", "intimidat(?:e|ing)", "threaten(?:ing)?", "blackmail(?:ing)?",
              "extort(?:ing)?", "sextort(?:ing)?", "dox(?:x)?(?:ing)?", "swat(?:ting)?", "cyberbully(?:ing)?"])
VIOLENT_PAST = alt(["killed", "murdered", "poisoned", "stabbed", "shot", "strangled", "choked", "hurt",
                    "kidnapped", "tortured", "drowned", "raped", "assaulted", "attacked", "executed",
                    "assassinated", "bullied", "harassed", "blackmailed"])
MAKE = alt(["make", "making", "build", "building", "construct(?:ing)?", "assembl(?:e|ing)", "creat(?:e|ing)",
            "manufactur(?:e|ing)", "produc(?:e|ing)", "synthesi[sz](?:e|ing)", "cook(?:ing)?", "brew(?:ing)?",
            "craft(?:ing)?", "3d[- ]?print(?:ing)?", "print(?:ing)?", "mix(?:ing)?", "rig(?:ging)?",
            "detonat(?:e|ing)", "set off", "improvis(?:e|ing)", "weaponi[sz](?:e|ing)", "extract(?:ing)?",
            "cultur(?:e|ing)", "enrich(?:ing)?", "convert(?:ing)?", "prepar(?:e|ing)", "grow(?:ing)?"])
WEAPON_STRICT = alt([
    "bombs?", "pipe bombs?", "nail bombs?", "car bombs?", "dirty bombs?", "letter bombs?", "time bombs?",
    "explosives?", "explosive devices?", "ieds?", "grenades?", "molotovs?", "molotov cocktails?", "napalm",
    "thermite", "c-?4", "semtex", "tnt", "dynamite", "detonators?", "blasting caps?", "land ?mines?",
    "nerve agents?", "nerve gas", "sarin", "vx", "tabun", "novichok", "mustard gas", "chlorine gas",
    "toxic gas", "poison(?:ous)? gas", "phosgene", "ricin", "anthrax", "botulinum(?: toxin)?", "bioweapons?",
    "biological weapons?", "chemical weapons?", "nuclear (?:bombs?|weapons?|devices?)", "nukes?",
    "atomic bombs?", "ghost guns?", "untraceable (?:guns?|firearms?)", "zip guns?", "silencers?",
    "suppressors?", "auto sears?", "full[- ]auto", "machine guns?", "cyanide", "arsenic", "strychnine",
    "thallium", "tetrodotoxin", "weapons? of mass destruction", "uranium", "fully automatic", "booby[- ]traps?",
    "tatp", "hmtd", "anfo", "(?:lethal |deadly )?toxins?", "pathogens?", "smallpox", "ebola", "pipe ?bombs?",
])
WEAPON = alt(WEAPON_STRICT, ["guns?", "firearms?", "rifles?", "pistols?", "weapons?", "poisons?"])
BENIGN_WEAPON_CONTEXT = (r"(?![\s-]+(?:shelters?|calorimeters?|cyclones?|disposal|squads?|detectors?|sniffing|"
                         r"proof|diffus\w*|defus\w*|ivy|oak|sumac|dart|control|frogs?|threat|emoji|safety)\b)")
BENIGN_MODIFIERS = alt(["bath", "seed", "photo", "f", "glitter", "stink", "smoke", "flavou?r", "calorie",
                        "cherry", "love", "truth", "beer", "water", "paint", "yarn", "bug", "nerf", "glue",
                        "toy", "squirt", "water", "spray", "hot glue", "staple", "nail", "heat", "caulk",
                        "grease", "airsoft", "paintball", "cookie", "sugar", "flour", "salt"])
DRUGS = alt(["meth(?:amphetamine)?", "crystal meth", "fentanyl", "heroin", "cocaine", "crack cocaine", "lsd",
             "mdma", "ecstasy", "ghb", "pcp", "dmt", "mescaline", "methcathinone", "carfentanil"])
DETAIL_WORDS = alt(["recipes?", "instructions?", "blueprints?", "schematics?", "formula", "diagrams?",
                    "step[- ]by[- ]step", "ingredients", "materials", "plans", "tutorial", "synthesis(?: route)?",
                    "quantities", "wiring", "parts"])
PLACES = alt(["house", "home", "car", "school", "building", "church", "mosque", "synagogue", "temple", "office",
              "store", "shop", "apartment", "plane", "airplane", "train", "bridge", "power (?:grid|plant|station)",
              "stadium", "mall", "embassy", "clinic", "hospital", "concert", "subway", "airport", "parliament"])
CRIME = alt([
    "launder(?:ing)? money", "money laundering", "credit card fraud", "commit (?:\\w+ )?fraud", "insurance fraud",
    "tax evasion", "evade taxes", "counterfeit (?:money|bills|cash|currency|notes)", "fake ids?",
    "forge (?:a |an |\\w+ )?(?:signatures?|documents?|checks?|cheques?|passports?|prescriptions?)",
    "identity theft", "steal (?:someone's |a |an )?identit(?:y|ies)", "ponzi scheme", "pyramid scheme",
    "embezzl(?:e|ing)", "bribe (?:a|the) (?:official|judge|cop|police|inspector)", "shoplift(?:ing)?",
    "pickpocket(?:ing)?", "rob (?:a|the) (?:bank|store|shop|house|gas station)", "hotwire (?:a|the) car",
    "scam (?:people|someone|elderly|old people|the elderly|seniors|grandma|my grandma|customers)",
    "school shooting", "mass shooting", "human trafficking", "traffic (?:people|women|girls|children)",
    "smuggl(?:e|ing) (?:\\w+ )?(?:drugs|people|weapons|cocaine|heroin|guns?|pistols?|firearms?)", "sell drugs",
    "dealing drugs", "ddos(?:ing)?", "swat(?:ting)? someone", "sim[- ]swap\\w*", "dog ?fight\\w*", "launder\\w*",
])
CREDENTIALS = alt(["passwords?", "credentials", "logins?", "login details", "credit card (?:numbers?|details|info)",
                   "card numbers?", "bank (?:details|accounts?|logins?)", "social security numbers?",
                   "session cookies", "cookies", "tokens", "crypto", "bitcoin", "wallets?", "2fa codes?", "card data",
                   "one[- ]time (?:codes|passwords)"])
ACCOUNTS = alt(["accounts?", "email", "e-mail", "gmail", "phone", "iphone", "instagram", "facebook", "snapchat",
                "twitter", "tiktok", "whatsapp", "icloud", "computer", "laptop", "wi-?fi", "network", "router",
                "bank account", "webcam", "camera", "messages", "texts", "dms"])
MALWARE = alt(["ransomware", "malware", "keyloggers?", "computer virus(?:es)?", "virus(?:es)?", "trojans?",
               "worms?", "botnets?", "rootkits?", "credential stealers?", "info-?stealers?", "cryptojackers?",
               "ddos (?:tools?|scripts?|attacks?)", "exploit kits?", "zero[- ]day exploits?", "remote access trojans?",
               "cryptominers?", "(?:malware )?payloads?", "exploits?"])

# Who makes a threat: the speaker promising it ("I will", "I'm going to", "we'll").
THREATENER = alt([r"i(?:'ll| will| shall|'m going to| am going to|'m gonna| am gonna| swear i'?ll)",
                  r"we(?:'ll| will|'re going to| are going to|'re gonna)", "next time i see (?:you|u),? i'?ll"])
# Violence promised to "you" (not VIOLENT: "I'll feed you", "I'll drug you to sleep" read otherwise).
THREAT_VIOLENT = alt(["kill", "murder", "hurt", "stab", "shoot", "strangle", "choke", "beat", "beat up", "smash",
                      "rape", "kidnap", "torture", "slit", "gut", "bury", "burn", "cut", "end", "destroy", "ruin",
                      "break", "wreck", "punch", "hit", "slap", "run over", "hunt down", "track down", "make (?:\\w+ )?pay",
                      "come for", "come after", "get", "find", "dox", "doxx", "expose", "blackmail"])
# "I'll find you a seat", "I'll get you a coffee": only "you" that ends the clause is the target.
THREAT_END = r"(?=\s*(?:$|[.!,;?]|and\b|when\b|if\b|wherever\b|one day\b|soon\b|tonight\b|i swear\b|bitch\b))"
THREAT_PHRASES = alt([
    r"i know where (?:you|u) (?:live|work|sleep|go to school)", r"(?:you're|you are|ur) (?:a )?dead (?:man|meat|woman)",
    r"(?:you'd|you had|you|u) better (?:watch your back|sleep with one eye open)", r"you(?:'ll| will) regret",
    r"(?:you|your family) (?:won't|will not) be safe", r"i(?:'m| am) coming for (?:you|u|your)",
    r"(?:sleep|rest) with one eye open", r"count your days", r"your days are numbered",
    r"(?:show|turn) up at (?:your|his|her|their) (?:door|house|home|work|school)",
])

HARM = [
    # Evidence *against* a flag, so a combining evaluator sees the benign reading ("kill a *process*").
    spec(H, "harmless object of a violent verb", near(alt(VIOLENT, COERCE), r"(?:(?:a|an|the|my|this|that|all|"
         rf"stuck|child|zombie|hung|frozen|old|background|running){SEP})*{BENIGN_OBJECTS}", 3), 0.05,
         negatable=False, soften=False),
    spec(H, "violence against a person", near(VIOLENT, NOT_ME, 3, BENIGN_OBJECTS), 0.7, 0.95),
    spec(H, "violence against a person", near(VIOLENT_PAST, NOT_ME, 2, BENIGN_OBJECTS), 0.4, 0.9),
    spec(H, "threatening, harassing or extorting a person", near(COERCE, NOT_ME, 3, BENIGN_OBJECTS), 0.7, 0.95),
    # A threat spoken to the reader ("I will find you and hurt you"): "you" is no target of VIOLENT above,
    # where "how do I kill you in chess" would be the usual reading; a first-person promise is not.
    spec(H, "threatening the reader", rf"\b{THREATENER}{WORDS}{{0,3}}?{SEP}{THREAT_VIOLENT}{SEP}(?:the \w+ out of{SEP})?"
                                       rf"(?:you|u|ya|your (?:family|kids?|wife|husband|face)){THREAT_END}", 0.75, 0.92),
    spec(H, "threatening the reader", THREAT_PHRASES, 0.75, 0.92),
    spec(H, "getting away with a crime", r"\bget(?:ting)? away with (?:murder|killing|it|a crime|rape|assault|"
                                         r"poisoning|arson|theft|stealing|fraud)\b", 0.5, 0.9),
    spec(H, "tampering with someone's food or drink",
         near(alt(["poison(?:ing)?", "spik(?:e|ing)", "lac(?:e|ing)", "drug(?:ging)?", "contaminat(?:e|ing)",
                   "tamper(?:ing)? with", "put \\w+ in"]), OTHER_PERSON + WORDS + "{0,1}?" + SEP +
              alt(["food", "drinks?", "coffee", "tea", "water(?: supply)?", "meals?", "wine", "beer", "lunch",
                   "dinner", "breakfast", "medications?", "pills", "inhaler", "insulin"]), 2), 0.8, 0.95),
    spec(H, "making a weapon, explosive or toxin",
         near(MAKE, WEAPON_STRICT + BENIGN_WEAPON_CONTEXT, 3, BENIGN_MODIFIERS), 0.85, 0.95),
    spec(H, "making a weapon, explosive or toxin",
         near(MAKE, WEAPON + BENIGN_WEAPON_CONTEXT, 2, BENIGN_MODIFIERS), 0.55, 0.85),
    spec(H, "making a weapon, explosive or toxin",
         near(alt(["homemade", "home-made", "diy", "improvised", "makeshift"]), WEAPON_STRICT, 1), 0.85, 0.95),
    spec(H, "instructions for a weapon, explosive or toxin", near(WEAPON_STRICT, DETAIL_WORDS, 2), 0.8, 0.95),
    spec(H, "instructions for a weapon, explosive or toxin", near(DETAIL_WORDS, WEAPON_STRICT, 3), 0.8, 0.95),
    spec(H, "making a weapon, explosive or toxin",
         rf"\bhow (?:are|is|were|was|do you|does one){WORDS}{{0,3}}?{SEP}{WEAPON_STRICT}{WORDS}{{0,2}}?{SEP}"
         r"(?:made|built|assembled|synthesi[sz]ed|produced|manufactured|make|build)\b", 0.55, 0.55,
         needs=r"\b(?:at home|in (?:my|a) (?:garage|kitchen|basement|shed)|homemade|myself|household)\b"),
    spec(H, "mentions a weapon, explosive or toxin", rf"\b{WEAPON_STRICT}\b{BENIGN_WEAPON_CONTEXT}", 0.3,
         negatable=False),
    spec(H, "making illegal drugs", near(MAKE, DRUGS, 3), 0.85, 0.95),
    spec(H, "making illegal drugs", near(DETAIL_WORDS, DRUGS, 3), 0.8, 0.95),
    spec(H, "planning harm unseen", rf"\b{EVASION}\b", 0.55, 0.8),
    spec(H, "making a trap or explosive", r"\b(?:so|that) (?:it|they) (?:explodes?|blows? up|detonates?)\b"
                                          r"|\bfile off (?:a|the) serial numbers?\b", 0.85, 0.95),
    spec(H, "making people sick or disappear",
         r"\bmake (?:him|her|them|everybody|everyone|people|my \w+|\w+ \w+s?) (?:really |very )?(?:sick|ill|disappear|"
         r"pass out|black out|vomit|overdose)\b", 0.75, 0.92),
    spec(H, "defeating security to commit a crime",
         near(alt(["bypass(?:ing)?", "disabl(?:e|ing)", "get(?:ting)? (?:past|around)", "cut(?:ting)?"]),
              alt(["alarms?", "(?:security )?cameras?", "security systems?", "smoke detectors?", "breathalyzers?",
                   "ankle monitors?", "metal detectors?", "brakes", "background checks?", "windows defender",
                   "antivirus"]), 3), 0.5, 0.85),
    spec(H, "fake login page", r"\bfake (?:login|log-in|sign-in|signin|bank|paypal) (?:pages?|sites?|forms?|portals?)\b"
                              r"|\bstolen (?:credit card|card|identities|accounts|credentials|logins)", 0.7, 0.92),
    spec(H, "self-harm", alt(["kill myself", "killing myself", "end my (?:own )?life", "take my (?:own )?life",
                              "commit suicide", "suicide methods?", "ways to die", "hurt myself", "harm myself",
                              "cut myself", "cutting myself", "hang myself", "starve myself", "slit my wrists",
                              "want to die", "better off dead", "don't want to (?:live|be alive)",
                              "painless (?:way|death)", "kill yourself", "kys"]), 0.85, 0.95),
    spec(H, "overdose or lethal dose", r"\b(?:overdos(?:e|ing)|lethal dose|fatal dose|deadly dose)\b", 0.4, 0.85),
    spec(H, "phishing", near(alt(["writ(?:e|ing)", "creat(?:e|ing)", "craft(?:ing)?", "draft(?:ing)?",
                                  "mak(?:e|ing)", "send(?:ing)?", "design(?:ing)?", "generat(?:e|ing)",
                                  "build(?:ing)?", "set(?:ting)? up", "launch(?:ing)?", "run(?:ning)?"]),
                             alt(["phishing", "spear-?phishing", "smishing", "vishing"]), 3), 0.9, 0.95),
    spec(H, "mentions phishing", r"\b(?:spear-?)?phishing\b", 0.35, negatable=False),
    spec(H, "stealing credentials, money or identities",
         near(alt(["steal(?:ing)?", "harvest(?:ing)?", "grab(?:bing)?", "phish(?:ing)?", "captur(?:e|ing)",
                   "sniff(?:ing)?", "exfiltrat(?:e|ing)", "swip(?:e|ing)", "skim(?:ming)?"]), CREDENTIALS, 4),
         0.85, 0.95),
    spec(H, "theft", near(alt(["steal(?:ing)?", "shoplift(?:ing)?", "rob(?:bing)?", "hotwir(?:e|ing)"]),
                          alt(["cars?", "bikes?", "catalytic converters?", "packages?", "wallets?", "purses?",
                               "jewel(?:le)?ry", "money", "cash", "from (?:a|the|my) \\w+"]), 3), 0.6, 0.9),
    spec(H, "breaking into someone's account or device",
         near(alt(["hack(?:ing)?(?: into)?", "break(?:ing)? into", "get(?:ting)? into", "access(?:ing)?",
                   "log(?:ging)? into", "hijack(?:ing)?", "take over", "crack(?:ing)?", "brute[- ]?forc(?:e|ing)",
                   "spy(?:ing)? on"]), OTHER_PERSON + WORDS + "{0,2}?" + SEP + ACCOUNTS, 2), 0.85, 0.95),
    spec(H, "breaking into a system or building",
         near(alt(["hack(?:ing)? into", "break(?:ing)? into", "breach(?:ing)?"]),
              rf"(?:a|an|the|my{SEP}\w+'s|{OTHER_PERSON}){SEP}(?:\w+{SEP})?(?:school|company|government|bank|hospital|"
              r"website|database|server|network|system|house|home|car|apartment|store|safe)", 1), 0.8, 0.95),
    spec(H, "writing or spreading malware",
         near(alt(["writ(?:e|ing)", "creat(?:e|ing)", "mak(?:e|ing)", "build(?:ing)?", "cod(?:e|ing)",
                   "develop(?:ing)?", "program(?:ming)?", "deploy(?:ing)?", "spread(?:ing)?", "distribut(?:e|ing)",
                   "design(?:ing)?", "obfuscat(?:e|ing)", "give me an?"]), MALWARE + r"(?![\s-]+(?:scanners?|protection|removal|definitions?|"
                                                  r"detection|checkers?|tests?|vaccines?)\b)", 3), 0.85, 0.95),
    spec(H, "crime", rf"\b{CRIME}\b", 0.35, 0.9),
    spec(H, "making counterfeit money or documents",
         near(alt([MAKE, "forg(?:e|ing)"]), alt(["counterfeit \\w+", "fake (?:money|bills|cash|ids?|passports?|"
                                                 "driver'?s licen[cs]es?)"]), 2), 0.85, 0.95),
    spec(H, "attacking a building or vehicle",
         near(alt(["set(?:ting)? fire to", "burn(?:ing)? down", "torch(?:ing)?", "firebomb(?:ing)?",
                   "blow(?:ing)? up", "bomb(?:ing)?", "vandali[sz](?:e|ing)", "sabotag(?:e|ing)", "shoot(?:ing)? up",
                   "attack(?:ing)?", "derail(?:ing)?", "crash(?:ing)? (?:a|the)"]), PLACES, 3), 0.75, 0.95),
    spec(H, "sexual content involving minors",
         near(alt(["nude", "naked", "explicit", "sexual", "sexy", "porn"]), alt(CHILD_NOUNS, ["\\d+[- ]year[- ]olds?"])
              + r"(?![\s-]+(?:education|abuse prevention|health|development))", 3), 0.8, 0.95),
    spec(H, "sexual content involving minors", r"\bchild (?:porn\w*|sexual abuse material)|\bcsam\b", 0.9, 0.95),
    spec(H, "grooming a child", near(r"groom(?:s|ing)?", alt(CHILD_NOUNS), 2), 0.85, 0.95),
]

LOCATE = alt(["find(?:ing)?(?: out)?", "get(?:ting)?", "look(?:ing)? up", "lookup", "track(?:ing)?(?: down)?",
              "trac(?:e|ing)", "locat(?:e|ing)", "obtain(?:ing)?", "dig(?:ging)? up", "uncover(?:ing)?",
              "expos(?:e|ing)", "reveal(?:ing)?", "leak(?:ing)?", "figur(?:e|ing) out", "discover(?:ing)?",
              "search(?:ing)? for", "pull(?:ing)? up", "know", "learn", "identify(?:ing)?", "get hold of",
              "doxx?(?:ing)?", "see", "access(?:ing)?"])
DATA = alt([
    "(?:home|house|current|real|exact|personal|private|residential|new|street|mailing) address(?:es)?",
    "address(?:es)?", "where (?:she|he|they) (?:lives?|works?|stays?|is staying|sleeps|hangs out|goes to school)",
    "(?:cell |mobile |personal |private |home )?phone numbers?", "(?:cell |mobile )?numbers?",
    "social security numbers?", "ssns?", "real names?", "(?:real )?identit(?:y|ies)", "full names?",
    "dates? of birth", "birthdays?", "medical (?:records?|history|information|info|conditions?)",
    "diagnos(?:is|es)", "bank (?:details|accounts?|statements?|information|info)", "salary", "income",
    "(?:exact |current |live |real[- ]time )?locations?", "whereabouts", "daily routines?", "schedules?",
    "workplace", "browsing history", "search history", "private (?:photos|pictures|messages|information|info|data)",
    "nudes?", "criminal records?", "credit (?:reports?|scores?|history)", "personal (?:data|information|info|details)",
    "ip address(?:es)?", "email address(?:es)?", "passport numbers?", "license plate numbers?",
])
SOURCE = alt(["licen[cs]e plates?", "number plates?", "plates? numbers?", "photos?", "pictures?", "selfies?",
              "images?", "usernames?", "user ?names?", "handles?", "ip address(?:es)?", "phone numbers?",
              "email address(?:es)?", "faces?", "instagram", "tinder(?: profile)?", "profiles?", "cars?"])
SURVEIL = alt(["track(?:ing)?", "monitor(?:ing)?", "spy(?:ing)? on", "watch(?:ing)?", "follow(?:ing)?",
               "read(?:ing)?", "check(?:ing)?", "see", "access(?:ing)?", "intercept(?:ing)?",
               "listen(?:ing)? (?:in )?to", "record(?:ing)?", "tap(?:ping)?", "bug(?:ging)?", "go through",
               "look through", "snoop(?:ing)?(?: on| through)?", "keep tabs on", "clon(?:e|ing)", "mirror(?:ing)?"])
PRIVATE_THINGS = alt(["phones?", "locations?", "messages", "texts", "text messages", "emails?", "e-mails", "calls",
                      "phone calls", "whatsapp", "dms", "direct messages", "browsing(?: history)?", "search history",
                      "conversations", "chats", "social media", "instagram", "facebook", "snapchat", "icloud",
                      "laptop", "computer", "car", "movements", "diary", "journal", "mail", "letters", "camera"])
SPY_TOOLS = alt(["spyware", "stalkerware", "a keylogger", "keyloggers?", "tracking (?:apps?|software|devices?)",
                 "(?:gps )?trackers?", "an? airtag", "airtags", "hidden cameras?", "spy (?:apps?|cameras?|software)",
                 "monitoring (?:apps?|software)", "a bug", "listening devices?"])
COVERT = alt([r"without (?:her|his|their|them|him|my \w+'s|anyone's|the person's|anyone|them) ?(?:knowing|"
              r"knowledge|consent|permission|noticing|finding out)", "secretly", "covertly", "in secret",
              r"behind (?:her|his|their|my \w+'s) back", r"without being (?:detected|noticed|seen)", "undetected",
              r"so (?:she|he|they) (?:doesn't|don't|won't|can't) (?:know|notice|find out)", "without her knowing",
              "without him knowing", "without them knowing"])

PRIVACY = [
    spec(P, "finding a private person's personal data",
         rf"\b{LOCATE}\b{WORDS}{{0,3}}?{SEP}{POSSESSOR}{WORDS}{{0,2}}?{SEP}{DATA}\b", 0.85, 0.95),
    spec(P, "finding someone else's personal data",
         rf"\b{LOCATE}\b{WORDS}{{0,3}}?{SEP}(?:his|her|their|{POSSESSOR}){WORDS}{{0,1}}?{SEP}{DATA}\b", 0.7, 0.9),
    spec(P, "finding someone else's personal data",
         rf"\b{LOCATE}\b{WORDS}{{0,3}}?{SEP}{DATA}{SEP}(?:of|for|belonging to){SEP}(?:(?:a|an|the|this|that|my|some)"
         rf"{SEP})?(?:\w+{SEP}){{0,2}}?"
         + alt(["someone", "somebody", "strangers?", "girl", "guy", "woman", "man", "celebrity", "people", "him",
                "her", "them", "ex", "crush", "coworker", "neighbou?r", "users?", "streamer", "poster", "commenter",
                "account", "reviewer", "influencer", "youtuber", "actress", "actor"]) + r"\b", 0.8, 0.9),
    spec(P, "finding where someone lives or works",
         rf"\b{LOCATE}\b{WORDS}{{0,2}}?{SEP}where{SEP}(?:(?:my|his|her|their|this|that|a|the){SEP})?(?:\w+{SEP})?"
         r"(?:lives?|works?|stays?|is staying|sleeps|hangs out|goes to school|parks)\b", 0.75, 0.9,
         unless=r"where (?:i|we) (?:live|work)"),
    spec(P, "asking where someone else lives or how to reach them",
         rf"\b(?:tell|give|send|text|dm|show|get|find) me{SEP}(?:(?:where|what){SEP}(?:(?:my|his|her|their|this|that|a|the)"
         rf"{SEP})?(?:\w+{SEP})?(?:lives?|works?|stays?|sleeps|goes to school)\b|(?:his|her|{POSSESSOR}){WORDS}{{0,1}}?{SEP}"
         rf"{DATA}\b)", 0.75, 0.9),
    spec(P, "identifying a person from a photo, plate or username",
         rf"\b{LOCATE}\b(?=[^.!?;]{{0,70}}\b(?:{DATA}|who|owner|someone|somebody|person|name|identity|they|she|he|"
         r"strangers?|girl|guy|woman|man|her|him)\b)"
         rf"[^.!?;]{{0,70}}\b(?:from|using|with|by|via|based on){SEP}(?:(?:a|an|the|their|his|her|someone's|this|that"
         rf"|my|just){SEP})?(?:\w+{SEP})?{SOURCE}\b", 0.85, 0.95),
    spec(P, "identifying a person from a photo, plate or username",
         rf"\b(?:who (?:owns|drives|is behind)|owner of){SEP}(?:(?:a|this|that|the){SEP})?(?:\w+{SEP})?"
         r"(?:licen[cs]e plates?|number plates?|plate numbers?|phone numbers?|email address(?:es)?|usernames?|"
         r"ip address(?:es)?|instagram|tinder|burner)\b", 0.7, 0.9),
    spec(P, "reading or tracking someone's private things",
         rf"\b{SURVEIL}\b{WORDS}{{0,2}}?{SEP}{OTHER_PERSON}{WORDS}{{0,2}}?{SEP}{PRIVATE_THINGS}\b", 0.7, 0.9),
    spec(P, "spying on or stalking a person", near(alt(["spy(?:ing)? on", "stalk(?:ing)?", "snoop(?:ing)? on",
                                                        "surveil", "keep tabs on", "cyberstalk(?:ing)?"]),
                                                   NON_SELF, 2), 0.85, 0.95),
    spec(P, "watching or recording a person", near(SURVEIL + "|film(?:ing)?|photograph(?:ing)?", NON_SELF, 2),
         0.35, 0.5, needs=COVERT),
    spec(P, "installing spyware or a tracker on someone",
         rf"\b(?:install|put|hide|plant|place|use|attach|slip)\w*\b{WORDS}{{0,2}}?{SEP}{SPY_TOOLS}[^.!?;]{{0,30}}"
         rf"\b(?:on|in|under|into|to){SEP}(?:{OTHER_PERSON}|her|his|someone's)", 0.9, 0.95),
    spec(P, "mentions spyware", r"\b(?:spyware|stalkerware)\b", 0.35),
    spec(P, "hidden camera in a private place",
         rf"\bhidden cameras?{SEP}(?:in|inside|into){SEP}(?:(?:the|a|my|her|his|their|our){SEP})?"
         r"(?:bathroom|bedroom|shower|changing room|locker room|airbnb|hotel room|guest room|toilet|dressing room|room|"
         r"apartment)\b", 0.8, 0.95,
         unless=r"\b(?:check\w*|detect\w*|spot|sweep|scan\w*|look(?:ing)? for|tell (?:if|whether)|is there|are there|"
                r"signs? of|found|discover\w*)\b[^.!?]{0,40}\bhidden cameras?"),  # the guest's defensive question
    spec(P, "secretly recording people",
         r"\b(?:secretly|covertly)\s+(?:record|film|photograph|videotape|tape|take (?:pictures|photos) of|watch)\w*"
         r"|\bupskirt\w*|\bcreepshots?\b", 0.85, 0.95),
    spec(P, "exposing someone's private information",
         rf"\b(?:post|share|leak|publish|spread|expose|releas|send|upload|doxx?)\w*\b{WORDS}{{0,2}}?{SEP}{OTHER_PERSON}"
         rf"{WORDS}{{0,2}}?{SEP}" + alt(["nudes?", "naked (?:photos|pictures)", "private (?:photos|pictures|videos|"
                                           "messages|information)", "intimate (?:photos|images|pictures|videos)",
                                           "sex tapes?", "home address", "address", "phone number",
                                           "medical records", "diagnosis", "hiv status", "sexual orientation",
                                           "real name", "ssn", "social security number"]) + r"\b", 0.9, 0.95),
    spec(P, "outing someone", rf"\bout(?:ing)?{SEP}(?:him|her|them|my \w+|someone){SEP}as{SEP}"
                               r"(?:gay|trans|lesbian|bi|bisexual|queer|transgender)\b", 0.85, 0.95),
    spec(P, "revenge porn", r"\brevenge porn\b", 0.5, 0.9),
    spec(P, "doxxing", r"\bdoxx?(?:ing|ed|es)?\b", 0.5, 0.9),
    spec(P, "contains a social security number", SSN.pattern, 0.7, negatable=False, soften=False),
    spec(P, "contains a payment card number", CARD.pattern, 0.7, negatable=False, soften=False, check=luhn_valid),
]
