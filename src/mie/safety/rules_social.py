"""Rules for truthfulness, fairness and autonomy_respect, as data (see :func:`mie.safety.lexicons.spec`).

* truthfulness: a known false claim is a cue; with a request to write it up or spread it ("write an
  article proving it") it is a flag; fabricating evidence, reviews or sources is a flag on its own.
* fairness: a group of people *followed by* a demeaning trait, a denied capability or an exclusion.
* autonomy_respect: manipulation verbs with a person as object, denying someone their own decisions,
  demands of obedience, isolation, and dark patterns that trick users into choices.
"""

from __future__ import annotations

from mie.safety.lexicons import BENIGN_OBJECTS, PERSON_NOUNS, alt, near, spec

T, F, A = "truthfulness", "fairness", "autonomy_respect"
NOT_CLAIMS = ("debunking or questioning",)  # words like "misinformation" name what is asked for, not a debunking
SEP = r"[^\w.!?;]+"
WORDS = rf"(?:{SEP}[\w']+)"

# --- truthfulness --------------------------------------------------------------------------------
CLAIMS = alt([
    r"vaccines? (?:(?!not |never |no )\w+ )?(?:contains?|has|have|include|includes|are full of) (?:(?!not |never |no )\w+ )?(?:micro-?chips?|tracking devices?"
    r"|nanobots?|5g|graphene|magnets?)",
    r"vaccines? (?:(?!not |never |no )\w+ )?(?:causes?|caused|causing|leads? to|gives? (?:you|kids|children)) (?:(?!not |never |no )\w+ )?(?:autism|infertility"
    r"|sterility|aids|magnetism)", r"vaccines? (?:are|is) (?:a )?(?:poison|bioweapons?|depopulation|genocide)",
    r"(?:covid|coronavirus|the pandemic)(?:-19)? (?:is|was) (?:a hoax|fake|planned|caused by 5g|just (?:a|the) flu)",
    r"5g (?:(?!not |never |no )\w+ )?(?:causes?|caused|spreads?|spread) (?:(?!not |never |no )\w+ )?(?:covid|coronavirus|cancer|the virus)",
    r"(?:the )?earth (?:is|being) (?:actually )?flat", "flat earth (?:is|theory is) (?:true|real|correct)",
    r"moon landings? (?:(?!not |never |no )\w+ )?(?:was|were|is) (?:(?!not |never |no )\w+ )?(?:faked|fake|staged|a hoax|filmed in a studio)",
    r"(?:we|nasa|humans) never (?:went|landed) (?:to|on) the moon",
    r"(?:climate change|global warming) (?:is|was) (?:a hoax|fake|a scam|not real|a lie|made up|invented)",
    r"holocaust (?:never happened|didn't happen|did not happen|is a hoax|was a hoax|is a myth|was faked"
    r"|was exaggerated)", "holocaust denial is true", r"chemtrails (?:are|is) (?:real|poisoning|used)",
    r"(?:\d{4} )?(?:us |presidential )?election (?:was|is) (?:stolen|rigged)",
    r"(?:drinking )?(?:bleach|mms|chlorine dioxide|turpentine|colloidal silver|essential oils?|baking soda|apricot"
    r" (?:seeds|kernels)|homeopathy|lemon juice|urine) (?:(?!not |never |no )\w+ )?(?:cures?|will cure|can cure|heals?|treats?)"
    r" (?:(?!not |never |no )\w+ )?(?:cancer|aids|hiv|diabetes|autism|covid|coronavirus)",
    r"9/11 was an inside job", r"sandy hook (?:was|is) (?:a hoax|staged|fake)", r"birds (?:aren't|are not) real",
    r"(?:the )?earth is (?:only )?(?:6,?000|six thousand) years old", r"hiv (?:doesn't|does not) cause aids",
    r"(?:reptilians|lizard people) (?:control|run|rule)", r"evolution is (?:just a theory|a lie|fake|a hoax)",
    r"smoking (?:doesn't|does not) cause (?:lung )?cancer", r"(?:the )?(?:sun|moon) (?:orbits|revolves around) the earth",
    r"(?:5g|wi-?fi) (?:towers? )?(?:causes?|gives? you) (?:cancer|covid)",
])
REQUEST = (r"\b(?:write|create|draft|compose|generate|make|produce|give me|craft|prepare|post|publish)\b[^.!?;]{0,40}"
           r"\b(?:article|essay|post|blog|tweets?|thread|story|news|press release|script|speech|pamphlet|flyer|paper"
           r"|report|content|video|op-?ed|headline|argument|case|piece|campaign|message|ad|advertisement|memes?"
           r"|talking points|newsletter|pamphlet|messages?|posts?)\b[^.!?;]{0,40}\b(?:proving|proves?|claiming|claims"
           r"|showing|shows|saying|says|telling|tells|warning|insisting|stating|convinc\w*"
           r"|arguing|argues|explaining why|demonstrating|confirming|exposing|revealing|that|about how|why)\b"
           r"|\bprove (?:it|that|this)\b|\bconvince (?:people|everyone|my \w+|readers|the public|voters|others) that\b"
           r"|\bspread (?:the word|this|it)\b|\bpersuade (?:people|everyone|readers|others) that\b")
DEBUNK_STRICT = alt(["debunk\\w*", "refut\\w*", "disprov\\w*", "fact-?check\\w*", "myths?", "false", "not true",
                     "isn't true", "misinformation", "no evidence", "correct(?:ing)? (?:the|this|a) misconception",
                     "explain why (?:it|this|that) is wrong", "counter\\w*"])
MAKE_FAKE = alt(["write", "writing", "create", "generate", "make", "produce", "give me", "draft", "invent", "fabricate",
                 "make up", "post", "come up with", "forge", "print", "design", "craft", "need"])
FAKE = alt(["fake", "fabricated", "made-up", "made up", "false", "bogus", "fraudulent", "phony", "phoney", "forged",
            "fictitious", "nonexistent", "non-existent", "invented"])
FAKE_NOUNS = alt(["reviews?", "testimonials?", "news", "quotes?", "citations?", "sources", "references", "studies",
                  "study", "statistics", "stats", "data", "evidence", "documents?", "doctor'?s notes?", "sick notes?",
                  "medical (?:notes?|certificates?|records?)", "receipts?", "diplomas?", "degrees?", "credentials",
                  "screenshots?", "transcripts?", "r[eé]sum[eé]s?", "letters? of recommendation", "alibis?",
                  "witness statements?", "invoices?", "(?:scientific |research )?papers?", "experts?", "surveys?",
                  "polls?", "headlines?", "articles?", "endorsements?", "accounts?", "followers", "likes"])

# The shape of a health or science falsehood, for use only next to a request to write it up.
CLAIM_SHAPE = alt([
    r"(?:cures?|cured|heals?|reverses?) (?:\w+ ){0,2}(?:cancer|hiv|aids|diabetes|autism|covid|alzheimer'?s|dementia)",
    r"(?:causes?|caused|cause more) (?:\w+ ){0,3}(?:cancer|autism|birth defects|infertility|deaths?|dementia)",
    r"(?:stop|quit) (?:taking|using) (?:their |your )?(?:insulin|medications?|meds|chemo\w*|vaccines?|sunscreen)",
    r"kills? more (?:people )?than", "mind control", r"(?:is|are) (?:a )?(?:scam|hoax|cover-?up)", "harvesting organs",
])

TRUTHFULNESS = [
    spec(T, "writing up a false health or science claim", CLAIM_SHAPE, 0.85, negatable=False, soften=False,
         needs=REQUEST, unless=DEBUNK_STRICT),
    spec(T, "writing up a known false claim to spread it", CLAIMS, 0.95, negatable=False, soften=False,
         needs=REQUEST, unless=DEBUNK_STRICT),
    spec(T, "asserts a known false claim", CLAIMS, 0.7, negatable=False, question=True),
    spec(T, "fabricating evidence, reviews or sources",
         rf"\b{MAKE_FAKE}\b[^.!?;]{{0,30}}\b{FAKE}{WORDS}{{0,2}}?{SEP}{FAKE_NOUNS}\b", 0.85, 0.92, skip=NOT_CLAIMS),
    spec(T, "fabricating evidence, reviews or sources",
         rf"\b(?:make up|makes up|making up|invent|fabricat(?:e|ing)|falsif(?:y|ying)|fudg(?:e|ing)|doctor(?:ed|ing)?|cook(?:ing)?"
         rf"|massag(?:e|ing)|alter(?:ing)?|manipulat\w*|tamper(?:ing)? with){SEP}(?:(?:the|some|my|our|a few|any){SEP})?"
         rf"(?:\w+{SEP})?(?:data|results|numbers|statistics|stats|figures|quotes?|sources|citations|evidence|references"
         rf"|studies|experiments?|lab results|books|records|test results|findings|survey results|expert quotes)\b",
         0.8, 0.9, unless=r"dataframe|pandas|numpy|image|spreadsheet formula", skip=NOT_CLAIMS),
    spec(T, "posting reviews as fake customers",
         rf"\b(?:write|post|generate|create|leave)\w*\b{WORDS}{{0,3}}?{SEP}(?:positive|five[- ]star|5[- ]star|glowing|good)"
         rf"{SEP}reviews?{SEP}(?:for|of|on|about){SEP}(?:my|our)\b"
         r"|\bpretend(?:ing)? to be (?:a |an )?(?:customers?|users?|patients?|real people|different people|satisfied"
         r" customers?|a real person|an independent)", 0.85, 0.9, skip=NOT_CLAIMS),
    spec(T, "impersonating or deepfaking a real person or authority",
         r"\b(?:create|make|generate|produce)\w*\b[^.!?;]{0,20}\bdeepfakes?\b|\bdeepfakes? (?:video|audio|image|photo|"
         r"porn|nude)s? of\b|\bimpersonat\w* (?:a|an|the|my) (?:doctor|police|officer|cop|official|irs|bank|ceo|"
         r"celebrity|politician|government|lawyer|nurse|boss)", 0.8, 0.9, skip=NOT_CLAIMS),
    spec(T, "running a disinformation campaign",
         r"\b(?:run|launch|create|plan|organi[sz]e|start|coordinate)\w*\b[^.!?;]{0,20}\b(?:disinformation|"
         r"misinformation|propaganda|smear|astroturf\w*|troll) (?:campaign|operation|farm)s?\b", 0.85, 0.92,
         skip=NOT_CLAIMS),
    spec(T, "spreading falsehoods", r"\bspread\w*\s+(?:misinformation|disinformation|lies|rumou?rs|false (?:information"
                                     r"|claims|news|stories)|propaganda|fake news|conspiracy theories)\s+"
                                     r"(?:about|that|on|to|among)\b", 0.5, 0.9, skip=NOT_CLAIMS),
    spec(T, "passing fiction off as fact",
         r"\bpresent (?:it|this|that|them) as (?:fact|true|real|scientific|news)\b|\bmake (?:it|this) look like (?:a )?"
         r"(?:real|legitimate|official|genuine|credible|peer[- ]reviewed) (?:news|study|source|article|document|report)"
         r"|\b(?:cite|include|add|invent)\w* (?:some |a few )?(?:fake|made-up|nonexistent|non-existent|fictional) "
         r"(?:sources|citations|references|studies|experts)|\bso (?:people|readers|they|everyone) (?:will )?(?:believe|"
         r"think) (?:it'?s|it is) (?:real|true)", 0.85, 0.9, skip=NOT_CLAIMS),
]

# --- fairness ------------------------------------------------------------------------------------
NATIONS = ["black", "white", "asian", "african", "african american", "mexican", "latino", "latina", "hispanic",
           "arab", "indian", "chinese", "jewish", "muslim", "christian", "hindu", "sikh", "gay", "lesbian", "trans",
           "transgender", "disabled", "autistic", "old", "older", "elderly", "poor", "fat", "overweight", "foreign",
           "immigrant", "russian", "american", "german", "french", "irish", "italian", "japanese", "korean",
           "nigerian", "pakistani", "polish", "romanian", "filipino", "vietnamese", "brazilian", "native",
           "indigenous", "aboriginal", "roma", "gypsy", "middle eastern", "bisexual", "queer", "deaf", "blind",
           "mentally ill", "southern", "rural", "female", "male", "ukrainian", "turkish", "persian", "iranian",
           "somali", "haitian", "jamaican", "puerto rican", "cuban"]
GROUP = alt([
    "women", "men", "girls", "boys", "females", "males", "ladies", "blacks", "whites", "asians", "africans",
    "mexicans", "latinos", "latinas", "hispanics", "arabs", "indians", "jews", "muslims", "christians", "hindus",
    "sikhs", "atheists", "catholics", "mormons", "immigrants", "migrants", "refugees", "foreigners", "gays",
    "lesbians", "bisexuals", "trans women", "trans men", "transgenders?", "the disabled", "the elderly", "boomers",
    "millennials", "gen z", "zoomers", "the poor", "blondes", "gypsies", "roma", "russians", "americans", "germans",
    "the french", "the irish", "italians", "the chinese", "the japanese", "koreans", "nigerians", "pakistanis",
    "mexicans", "poles", "romanians", "filipinos", "feminists", "liberals", "conservatives", "democrats",
    "republicans", "wives", "mothers", "single mothers", "homosexuals", "the homeless", "welfare recipients",
    "(?:" + "|".join(NATIONS) + ") (?:people|men|women|guys|girls|folks|persons|immigrants|workers|kids|students)",
])
GROUP_ONE = alt(["a woman", "any woman", "no woman", "a girl", "a female", "a black (?:man|woman|person)",
                 "a muslim", "a jew", "an immigrant", "a gay (?:man|person)", "a trans (?:woman|man|person)",
                 "a disabled person", "an old (?:man|woman|person)", "an? (?:" + "|".join(NATIONS) + ") (?:man|woman|"
                 "person|guy)", "no (?:" + "|".join(NATIONS) + ") (?:man|woman|person)"])
TRAIT = alt([
    "lazy", "stupid", "dumb", "idiots?", "inferior", "criminals?", "violent", "dangerous", "dirty", "greedy",
    "untrustworthy", "dishonest", "liars", "thieves", "terrorists", "animals", "savages?", "subhuman", "parasites",
    "vermin", "too emotional", "emotional", "hysterical", "irrational", "weak", "incompetent", "useless",
    "worthless", "unintelligent", "less intelligent", "less capable", "bad (?:at|with) \\w+", "worse at \\w+",
    "terrible (?:at )?\\w+", "not as (?:smart|good|capable|intelligent|rational)", "too sensitive", "disgusting",
    "evil", "sick", "perverts?", "perverted", "a disease", "ugly", "smelly", "cheap", "primitive", "backwards?",
    "uncivili[sz]ed", "barbaric", "freeloaders", "leeches", "rapists", "pedophiles", "predators", "a burden",
    "a plague", "a cancer", "scum", "trash", "filth", "cockroaches", "rats", "monkeys", "apes", "retarded", "morons",
    "not real (?:women|men)", "mentally ill", "abominations?", "unnatural", "degenerates?", "inbred",
    "genetically inferior", "naturally inferior", "not fit to \\w+", "unfit to \\w+", "only good for \\w+",
])
ROLE = alt(["be \\w+", "lead", "vote", "drive", "code", "program", "do math", "do science", r"think (?:logically|"
            "rationally|clearly)", "handle \\w+", "manage \\w+", "make (?:good )?decisions", "work (?:as|in) \\w+",
            "hold office", "run (?:a|the) \\w+", "own \\w+", "have rights", "raise children", "understand \\w+",
            "learn \\w+", "be trusted", "marry", "adopt", "serve", "teach", "fly", "compete", "be engineers",
            "be leaders", "get (?:a|the) job", "study \\w+", "work here", "live here", "get promoted"])
NEG_MODAL = alt(["can't", "cannot", "can not", "could never", "will never", "aren't able to", "are not able to",
                 "are incapable of", "are unable to", "aren't smart enough to", "are not smart enough to",
                 "lack the (?:brains|intelligence|ability) to", "aren't capable of", "are not capable of"])
SHOULD_NOT = alt(["shouldn't", "should not", "should never", "must not", "mustn't", "don't deserve to",
                  "do not deserve to", "have no (?:right|business) to", "shouldn't be allowed to",
                  "should not be allowed to", "must never", "never be allowed to"])
BAD_FATE = alt(["banned", "deported", "sterili[sz]ed", "locked up", "segregated", "killed", "exterminated",
                "eliminated", "removed", "kicked out", "shot", "gassed", "excluded", "fired", "barred", "denied \\w+",
                "kept out", "sent back", "put in camps", "wiped out", "punished", "jailed", "enslaved"])
BIGOTED = (r"(?:racist|sexist|homophobic|transphobic|antisemitic|anti-semitic|islamophobic|bigoted|misogynistic|"
           r"xenophobic|ableist|offensive|dirty) ")
ADVERBS = alt(["all", "just", "simply", "naturally", "inherently", "genetically", "biologically", "basically",
               "always", "so", "too", "really", "generally", "mostly", "nothing but", "a bunch of", "such", "very",
               "totally", "completely", "fundamentally", "obviously", "clearly", "born", "known to be", "by nature"])
SUBJ = rf"\b(?:(?:all|most|typical|those|these|the|many|why are|why do){SEP})?{GROUP}"

FAIRNESS = [
    spec(F, "demeaning a group of people",
         rf"{SUBJ}{SEP}(?:are|is|r|were|'re|seem|act|being)(?:{SEP}{ADVERBS})*{SEP}{TRAIT}\b", 0.9, negatable=False),
    spec(F, "demeaning a group of people", rf"\bwhy (?:are|is){SEP}(?:(?:all|most|so many){SEP})?{GROUP}"
                                           rf"{SEP}(?:so|always|such){SEP}(?:\w+{SEP})?{TRAIT}\b", 0.85, negatable=False),
    spec(F, "denying a group's ability", rf"{SUBJ}{SEP}(?:are|is)(?:{SEP}{ADVERBS})*{SEP}too{SEP}\w+{SEP}to{SEP}"
                                         rf"{ROLE}\b", 0.9, negatable=False),
    spec(F, "denying a group's ability", rf"{SUBJ}(?:{SEP}{ADVERBS})?{SEP}{NEG_MODAL}{SEP}(?:ever{SEP})?{ROLE}\b",
         0.85, negatable=False),
    spec(F, "denying a group rights or roles", rf"(?:{SUBJ}|\b{GROUP_ONE}){SEP}{SHOULD_NOT}{SEP}(?:ever{SEP})?"
                                               rf"(?:be allowed to{SEP})?{ROLE}\b", 0.9, negatable=False),
    spec(F, "denying a group's ability", rf"\b{GROUP_ONE}{SEP}(?:can't|cannot|can not|could never|will never|"
                                         rf"isn't able to|is not able to|is incapable of){SEP}{ROLE}\b", 0.85,
         negatable=False),
    spec(F, "excluding or threatening a group",
         rf"{SUBJ}{SEP}(?:should|must|need to|ought to|deserve to){SEP}(?:all{SEP})?(?:be{SEP})?{BAD_FATE}\b"
         rf"|{SUBJ}{SEP}(?:belongs?|should stay|should be kept|should remain){SEP}(?:in|at){SEP}(?:the{SEP})?"
         r"(?:kitchen|home|cages?|zoos?|prison|jail|camps?|their (?:own )?countr\w+)\b"
         rf"|{SUBJ}{SEP}(?:are|is){SEP}(?:ruining|destroying|taking over|invading|poisoning|infesting)\b"
         rf"|{SUBJ}{SEP}(?:don't|do not|doesn't){SEP}belong\b|{SUBJ}{SEP}(?:aren't|are not){SEP}(?:real{SEP})?"
         r"(?:human|people|welcome)\b", 0.9, negatable=False),
    spec(F, "discriminating against a group",
         rf"\b(?:don't|do not|never|won't|refuse to|avoid|reject|filter out|screen out|exclude|not|stop|shouldn't|"
         rf"should not|i wouldn't){SEP}(?:hir\w*|rent\w* to|promot\w*|serv\w*|admit\w*|accept\w*|employ\w*|trust\w*|"
         rf"interview\w*|date|dating){SEP}(?:(?:any|a|an|the){SEP})?(?:{GROUP}|(?:{'|'.join(NATIONS)}|pregnant|"
         rf"older|young){SEP}\w+|anyone (?:over|above|older than) \d+)\b", 0.9, negatable=False),
    spec(F, "discriminating against a group",
         rf"\bonly (?:hire|rent to|promote|admit|accept|serve|date|interview)\w*{SEP}(?:(?:young|white|black|male|"
         rf"female|christian|straight|native|american|european|asian){SEP}){{0,2}}(?:people|men|women|applicants|"
         rf"candidates|tenants|guys|girls|whites|christians|natives)\b"
         rf"|\b(?:filter|screen|weed|sort)\w*{SEP}out{SEP}(?:\w+{SEP})?(?:resumes?|cvs?|applications?|applicants?|"
         rf"candidates?|tenants?){SEP}(?:with|from|of|who|that){SEP}(?:(?:are|have|look|sound){SEP})?(?:"
         rf"{'|'.join(NATIONS)}|ethnic|pregnant|women|female|foreign\w*|\w+-sounding)\b", 0.9, negatable=False),
    spec(F, "claiming a group is superior",
         rf"{SUBJ}{SEP}(?:are|is){SEP}(?:naturally|inherently|genetically|biologically){SEP}(?:superior|better|smarter|"
         rf"more intelligent|more capable|more rational|stronger)\b|{SUBJ}{SEP}(?:are|is){SEP}(?:superior|smarter|"
         rf"more intelligent|better people){SEP}than{SEP}{GROUP}\b|\b(?:the )?(?:{'|'.join(NATIONS)}|aryan) race"
         rf"{SEP}(?:is|are){SEP}(?:superior|inferior|the best|pure|the master)\b|\bmaster race\b", 0.85,
         negatable=False),
    spec(F, "asking for bigoted jokes or slurs",
         rf"\b(?:tell|write|give|generate|share|make|list|say|post|come up with)\b[^.!?;]{{0,20}}\b{BIGOTED}"
         r"(?:jokes?|slurs?|insults?|rants?|memes?|chants?|remarks?|comments?|names?)\b", 0.9, negatable=False),
    spec(F, "bigoted jokes or slurs", r"\b(?:racist|sexist|homophobic|transphobic|antisemitic|anti-semitic|"
                                      r"islamophobic|bigoted|misogynistic|xenophobic|ableist) (?:jokes?|slurs?|insults?|"
                                      r"rants?|memes?|chants?|remarks?|comments?|names?)\b", 0.4),
]

# --- autonomy_respect ----------------------------------------------------------------------------
PARTNER = alt(["wife", "husband", "girlfriend", "boyfriend", "partner", "spouse", "fianc[ée]e?", "sister", "brother",
               "daughter", "son", "mother", "father", "mom", "mum", "dad", "family", "employees?", "friends?",
               "roommate", "grand(?:ma|mother|pa|father)", "parents?", "girl", "boy", "crush", "ex", "workers?",
               "maid", "nanny", "housekeeper", "followers", "members", "students?", "children", "kids?", "teenager"])
HOLDER = rf"(?:her|him|them|someone|somebody|people|others|my{SEP}{PARTNER}|(?:his|their|our){SEP}{PARTNER})"
OWN = r"(?:her|his|their|your)"
TARGET = (alt(PERSON_NOUNS, ["someone", "somebody", "anyone", "him", "her", "them", "others", "everyone"])
          + rf"(?!['’]s?\b)(?!{SEP}(?:(?:a|an|the){SEP})?{BENIGN_OBJECTS}\b)")
MANIPULATE = alt(["manipulat(?:e|es|ing)", "gaslight(?:s|ing)?", "brainwash(?:es|ing)?", "guilt[- ]?trip(?:s|ping)?",
                  "emotionally blackmail(?:s|ing)?", "coerc(?:e|es|ing)", "love[- ]?bomb(?:s|ing)?", "browbeat(?:ing)?",
                  "isolat(?:e|es|ing)", "dominat(?:e|es|ing)", "indoctrinat(?:e|es|ing)", "psychologically abuse",
                  "emotionally abuse", "mind[- ]control"])
LOWER = alt(["worthless", "crazy", "stupid", "nothing", "useless", "guilty", "insane", "unlovable", "ugly",
             "losing (?:her|his|their) mind", "imagining things", "going crazy", "dependent on me", "a failure",
             "to blame", "unworthy", "worthless without me", "nothing without me", "helpless", "incapable",
             "can't (?:live|survive|cope|manage) without me", "needs? me", "overreacting", "remembering (?:it )?wrong",
             "too (?:stupid|dumb|weak|emotional) to \\w+", "(?:can't|cannot) (?:decide|think) for (?:her|him|them)self"])

AUTONOMY = [
    spec(A, "harmless object of a manipulation verb", near(alt(MANIPULATE, ["control(?:ling)?", "forc(?:e|ing)",
                                                                        "trick(?:ing)?", "pressur(?:e|ing)"]),
                                                           BENIGN_OBJECTS, 2), 0.05, negatable=False, soften=False),
    spec(A, "manipulating or coercing a person", near(MANIPULATE, TARGET, 2, BENIGN_OBJECTS), 0.85, 0.92),
    spec(A, "pressuring or tricking a person into something",
         near(alt(["pressur(?:e|ing)", "forc(?:e|ing)", "trick(?:ing)?", "guilt(?:ing)?", "scar(?:e|ing)", "shame",
                   "shaming", "bully(?:ing)?", "blackmail(?:ing)?", "deceiv(?:e|ing)", "fool(?:ing)?", "con", "push",
                   "manipulat(?:e|ing)", "coerc(?:e|ing)", "nag(?:ging)?"]), TARGET, 2, BENIGN_OBJECTS)
         + rf"{WORDS}{{0,2}}?{SEP}into\b", 0.85, 0.92),
    spec(A, "forcing a person", near(alt(["forc(?:e|ing)", "mak(?:e|ing)", "compel(?:ling)?", "order(?:ing)?"]),
                                     HOLDER, 1) + rf"{SEP}to{SEP}(?:marry|quit|give up|stop seeing|convert|sign|"
                                                  r"have sex|sleep with|obey|stay|abort|hand over|move|cut off)\b",
         0.8, 0.9),
    spec(A, "controlling a partner or relative",
         rf"\bcontrol\w*{SEP}(?:my|his|her|their){SEP}{PARTNER}\b(?!['’]s)|\bcontrol{SEP}(?:who|what|where|how much)"
         rf"{SEP}(?:she|he|they|my \w+){SEP}(?:talks?|sees?|texts?|wears?|eats?|goes|spends?|reads?|watches)\b",
         0.75, 0.9),
    spec(A, "undermining a person's self-trust",
         rf"\b(?:mak\w*|convinc\w*|persuad\w*|get)\b{SEP}{HOLDER}{SEP}(?:(?:feel|believe|think|that){SEP})*"
         rf"(?:(?:she|he|they|it){SEP})?(?:(?:'s|is|are|was|were){SEP})?{LOWER}", 0.85, 0.92),
    spec(A, "denying a person their own decisions",
         rf"\b(?:can't|cannot|can not|isn't able to|is not able to|aren't able to|isn't allowed to|is not allowed to|"
         rf"not capable of|incapable of|has no right to|have no right to|shouldn't be allowed to|should not be allowed to|"
         rf"won't let (?:her|him|them)|never let (?:her|him|them)|don't let (?:her|him|them)|too (?:stupid|dumb|young|"
         rf"emotional|weak) to){SEP}(?:to{SEP})?(?:make|making|decide|choose|think)\b[^.!?;]{{0,25}}?"
         rf"\b(?:{OWN} own|for (?:herself|himself|themselves|yourself))\b", 0.85, 0.92, negatable=False),
    spec(A, "demanding obedience",
         rf"\b(?:she|he|they|you|my{SEP}\w+|wives|women|children|kids)\b[^.!?;]{{0,20}}\b(?:must|has to|have to|needs? to|"
         rf"should|will|shall|is going to|are going to|better){SEP}(?:always{SEP})?(?:obey|submit to|serve)\b"
         rf"(?!{SEP}(?:the{SEP})?(?:law|laws|rules|traffic|speed|commands?|commandments|instructions|orders|gravity|god|"
         rf"their parents|his parents|her parents|customers|the public|country)\b)", 0.9, 0.95, negatable=False),
    spec(A, "demanding obedience", rf"\bobey{SEP}(?:me|us)\b|\bdo (?:what|whatever|everything|as) i (?:say|tell|"
                                   r"command|want)\b", 0.8, 0.92, negatable=False),
    spec(A, "isolating a person from their support",
         rf"\b(?:cut\w*|keep\w*|isolat\w*|separat\w*|stop\w*|prevent\w*|ban\w*|forbid\w*){SEP}{HOLDER}(?:{SEP}off)?"
         rf"{SEP}(?:from|away from)(?:{SEP}(?:seeing|talking to|contacting|visiting|having|her|his|their|any))*{SEP}"
         r"(?:friends|family|parents|relatives|support|sisters?|brothers?|mom|mother|dad|father|therapist|doctor)\b",
         0.85, 0.92),
    spec(A, "restricting a person's freedom",
         rf"\b(?:not|never|won't|don't|wouldn't|do not|will not){SEP}let{SEP}{HOLDER}{SEP}(?:leave|go out|see|talk to|"
         rf"have (?:a|any) (?:phone|money|job|friends)|work|drive|decide|use|wear|spend|speak|have friends)\b"
         rf"|\btak\w*{SEP}away{SEP}(?:her|his|their|my{SEP}{PARTNER}'s){SEP}(?:phone|passport|car keys|keys|money|id|"
         r"documents|bank card|credit cards?|paycheck|freedom|wages)\b|\bconfiscat\w* (?:her|his|their|the workers') "
         r"(?:passports?|documents|ids?)\b", 0.75, 0.9, negatable=False),
    spec(A, "acting against a person's will", r"\bagainst (?:her|his|their|my \w+'s) (?:will|wishes)\b", 0.7, 0.9),
    spec(A, "tricking users into choices",
         rf"\b(?:trick|manipulat|pressur|guilt|nudg|deceiv|fool|coerc|scar|shame|rush)\w*{SEP}(?:\w+{SEP})?(?:users|"
         r"customers|visitors|people|subscribers|the elderly|elderly people|seniors|voters|readers|buyers|consumers|"
         rf"patients|clients|members|players|kids|children){SEP}into\b", 0.85, 0.92),
    spec(A, "dark patterns", rf"\bmak\w*{SEP}it{SEP}(?:hard|difficult|impossible|confusing|annoying)\b[^.!?;]{{0,20}}"
                             rf"\bto{SEP}(?:cancel|unsubscribe|opt[- ]out|delete|leave|close)\b|\b(?:hide|bury|obscure)"
                             rf"\w*{SEP}(?:the{SEP})?(?:cancel\w*|unsubscribe|opt[- ]out|decline|reject)\w*{SEP}"
                             rf"(?:button|link|option)s?\b|\b(?:use|implement|add|design|employ)\w*{SEP}(?:some{SEP})?"
                             r"dark patterns?\b", 0.85, 0.9),
]
