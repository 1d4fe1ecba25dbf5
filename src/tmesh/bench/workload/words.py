"""Plain English vocabulary for synthetic prompts and tokenizer probes.

Common words are single tokens with a leading space in every mainstream tokenizer (GPT-style byte
BPE, Llama 3, Qwen, gpt-oss, SentencePiece models), which is what lets prompts be built to an exact
token length by counting words instead of tokenizing word by word. The lists are candidates only:
`vocabulary` measures what each costs under a given tokenizer.
"""

from __future__ import annotations

import random

# Capitalised words that open a sentence.
_STARTER_TEXT = """
    The This That These Those Each Every Some Many Most Few Several Our Their Its His Her One
    Two Later Then Still Often Soon Yet Now Here There Today Next Once Meanwhile However Also
    Perhaps Indeed Instead Finally First Again After Before During Since While When Where
    Although Because
"""
STARTERS: tuple[str, ...] = tuple(_STARTER_TEXT.split())

# Lower-case content and function words for the body of sentences.
_WORD_TEXT = """
    able about above across act action active add address after again against age agent ago
    agree ahead air allow almost alone along already also always among amount ancient and animal
    answer any apple apply area argue arm army around arrive art article artist ask attack
    attempt attend author autumn avoid away baby back bad bag balance ball band bank bar base
    basic basket battle beach bear beat beautiful because become bed before begin behind believe
    bell below benefit best better between beyond big bird birth bit black blank block blood
    blue board boat body bone book border born both bottle bottom box boy brain branch bread
    break bridge brief bright bring broad brother brown budget build building burn business busy
    but buy cabin cable call calm camera camp can capital captain car card care career carry
    case castle cat catch cause ceiling cell center central century certain chain chair chance
    change chapter character charge check chief child choice choose church circle citizen city
    civil claim class clean clear climb clock close cloth cloud club coast coat code coffee cold
    collect college color column come comfort common company compare complete concern condition
    consider contain continue control cook cool copy corner cost cotton could count country
    couple courage course court cover craft create crew crop cross crowd culture cup current
    customer cut cycle daily dance danger dark data date daughter day dead deal dear debate
    decade decide deep defense degree deliver demand depend describe desert design desk detail
    develop device differ difficult dinner direct discover discuss distance divide doctor
    document dog door double down draft drama draw dream dress drink drive drop dry during dust
    duty each early earn earth east easy eat economy edge effect effort eight either election
    element else empty end enemy energy engine enjoy enough enter entire equal error escape even
    evening event ever every exact example expect expert explain express extra eye face fact
    factor fail fair faith fall family famous far farm fast father fear feature feel field fight
    figure file fill film final find fine finger finish fire firm first fish five flat flight
    floor flow flower fly focus follow food foot force forest forget form former forward four
    frame free fresh friend from front fruit full fund future game garden gate gather general
    gentle gift girl give glass goal gold good govern grand grass great green ground group grow
    growth guard guess guest guide hair half hall hand happen happy hard harbor head health hear
    heart heat heavy help here hero high hill history hold hole holiday home hope horse hospital
    host hot hotel hour house huge human hundred idea image imagine impact improve include
    income increase indeed index industry inside instead interest into iron island issue item
    join journey judge just keep key kind king kitchen knee know labor lady lake land language
    large last late laugh law lawyer layer lead leader learn least leave left legal lesson
    letter level library life lift light like limit line list listen little live local long look
    lose loss lot loud love low lunch machine main major make manage manner many map market
    master match matter maybe meal mean measure meat media medical meet member memory mention
    message metal method middle might mile military milk mind minute mirror miss model modern
    moment money month moon more morning most mother motion mountain mouth move movie much music
    must name nation native natural nature near nearly neck need never new news next nice night
    nine noise none north note nothing notice novel now number object ocean offer office officer
    often oil old once only open option orange order other outside over owner page paint pair
    paper parent park part party pass past path patient pattern pay peace people period person
    phone photo piece place plain plan plane plant plate play player please plenty pocket poem
    point police policy poor popular position positive power practice prepare present press
    pretty price pride print private problem process produce product program project proper
    protect proud prove public pull purpose push quality question quick quiet quite race radio
    rain raise range rate rather reach read ready real reason receive recent record red reduce
    region remain remember remove repeat report rest result return rich ride right ring rise
    risk river road rock role roof room root rope rough round route royal rule run safe sail
    salt same sand save say scale scene school science score sea season seat second secret
    section see seed seek seem sell send sense series serious serve service set seven several
    shade shadow shape share sharp sheet shelf shell shift ship shirt shoe shop short should
    shoulder show side sign signal silver simple since sing single sister sit site six size
    skill skin sky sleep slow small smile snow social soft soil soldier solid solve some son
    song soon sort sound source south space speak special speech speed spend spirit sport spot
    spring square staff stage stand standard star start state station stay steel step stick
    still stone stop store storm story straight strange stream street strong student study style
    subject success such sudden sugar suggest summer sun supply support sure surface system
    table take talk tall task taste teach team term test text than thank that theory there thick
    thin thing think third those though thought three through throw ticket tide time tiny title
    today together tomorrow tone tonight tool top total touch toward tower town track trade
    train travel tree trial trip trouble truck true trust truth try turn twelve twenty twice
    type under unit until upon upper usual valley value various very view village visit voice
    vote wait walk wall want war warm wash watch water wave way weak wealth wear weather week
    weight well west wheel where whether which while white whole wide wife wild will win wind
    window winter wish with within without woman wonder wood word work worker world worry would
    write writer wrong yard year yellow yes yet young youth zone
"""
WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())

# Words of WORDS that make odd question topics ("what does the passage say about though?").
_FUNCTION_TEXT = """
    able about above across after again against ago ahead almost alone along already also always
    among and any around away because before behind below between beyond both but can could down
    during each either else enough even ever every from here indeed instead into just least left
    maybe might more most much must near nearly never next none now often once only other over
    please pretty quite rather same several should since some soon still such than that there
    those though through today tomorrow tonight toward twice under until upon very well where
    whether which while will with within without would yes yet
"""
FUNCTION_WORDS: frozenset[str] = frozenset(_FUNCTION_TEXT.split())


def prose(rng: random.Random, pieces: int) -> str:
    """Sentences of about `pieces` words and periods from the whole vocabulary: text that
    tokenizes like the filler of a context, for calibration probes and test corpora."""
    sentences = []
    while pieces > 0:
        length = min(pieces, 6 + int(rng.random() * 13))
        words = [rng.choice(STARTERS), *rng.choices(WORDS, k=max(length - 2, 0))]
        sentences.append(" ".join(words) + ".")
        pieces -= length
    return " ".join(sentences)
