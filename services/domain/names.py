"""Finding people's names in free text (pure), from Faker's offline name lists.

The lists are Faker's person providers for US English and seven Spanish locales (first names
and surnames drawn from census and civil-registry frequency tables), read from the installed
package: no network, nothing to download. A word on the first-name list is a name unless it is
also an ordinary word (`COMMON_WORDS`) and nothing around it says "person"; a surname counts
after a first name, a title or a word like "student" / "familia". A capitalised run that ends
in a place word ("Lincoln Ave", "Ruiz Park", "César Chávez Elementary") or follows one ("calle
Juárez", "San José") is a place, not a person.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from importlib import import_module


def _words(text: str) -> frozenset[str]:
    """A word list written as running text (easier to read and extend than quoted items)."""
    return frozenset(text.split())


LOCALES = ("en_US", "es", "es_MX", "es_ES", "es_CO", "es_AR", "es_CL", "es_CA")

# Ordinary English and Spanish words that are also on the name lists: a name only with a
# person around them ("Sra. Rosa", "Rosa Pérez"), never alone ("la puerta rosa", "Hope St").
COMMON_WORDS = _words(
    """
    will mark grant bill art rose may june april august dean guy hope joy faith grace chase
    hunter summer autumn dawn destiny hall park king young little long white black brown green
    gray grey hill wood woods ford lane street bell case cook page price rich west north south
    east day love sharp strong stone ward rod gate field fields doors door side front back main
    north carter lincoln washington jefferson madison jackson kennedy franklin garfield monroe
    harrison grant roosevelt wilson adams hamilton hamline lee major miles rivers river lake
    glen dale cliff clay heath ray sky storm star sunny holly ivy iris lily violet pearl ruby
    amber crystal jade jewel honey candy angel cruz luz paz sol mar rosa blanca blanco alba
    dolores pilar mercedes reyes santos victoria gloria consuelo amparo rocio nieves rosario luna
    estrella perla paloma esperanza caridad fe socorro soledad asuncion concepcion encarnacion
    milagros remedios trinidad vega campo castillo iglesias prado pozo torre torres rey leon
    moreno rojo nino nieto plaza puerta salas sala cano bello calle fuentes rios montes mesa
    ramos flores vidal bravo cortes mora sierra monte valle bosque cuevas cueva roca pena
    parra palma olivo pino manzano lugo marin franco duque conde prieto ruiz principal
    justice judge warren march said del don che nel nil max ever lady sue pam penny lance chad
    jack frank drew ross misty dolly ebony raven sandy paige lacey jay kent rico milan digna
    nacio noe amor ambar aura cielo coral flor flora alta amada amado salud reina dulce oliva
    clara nina gala tono segundo transito domingo corona cristal almendra azucena candela
    gracia felicidad piedad pastor pastora lucero aurora genesis urbano modesto placido severo
    primitivo martirio melody diamond magnolia gallego esparta america africa francia justo
    christian
    """
)

# A capitalised run ending in one of these words, or starting after one, names a place.
PLACE_AFTER = _words(
    """
    st street ave avenue blvd boulevard rd road dr drive ln lane way ct court pl place pkwy
    parkway hwy highway sq square cir circle ter terrace park plaza bridge station church
    school elementary middle high academy library center centre field stadium hall building
    bldg gym gymnasium auditorium wing campus annex entrance gate door doors side lot memorial
    street's playground pool house
    """
)
PLACE_BEFORE = _words(
    """
    calle avenida av avda bulevar paseo camino plaza parque escuela colegio primaria
    secundaria edificio gimnasio biblioteca centro estacion iglesia puente carretera barrio
    colonia san santa santo st saint fort mount mt lake
    """
)
# Words that announce a person: a title, a relation, "named".
PERSON_CUES = _words(
    """
    mr mrs ms miss mx sr sra srta don dona student students estudiante estudiantes alumno
    alumna alumnos alumnas mom mother mum dad father parent parents guardian madre padre mama
    papa hijo hija hijos hijas nino nina ninos ninas child kid son daughter family familia
    named called llamado llamada nombre apellido surname teacher maestro maestra
    brother sister hermano hermana aunt uncle tia tio grandma grandpa abuela abuelo
    """
)
# Words after a surname that make it a family's name ("the Garcia family").
FOLLOWING_CUES = _words("family household kids children boy girl brothers sisters")

WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


_POSSESSIVE = re.compile(r"['’]s$")


def fold(word: str) -> str:
    """Lower case without accents nor a possessive, for looking a word up ("María's" →
    "maria")."""
    if word.isascii() and "'" not in word:
        # Most words (the screen folds every word of a report, ~0.5 ms a report the long
        # way): ASCII has no accents to strip (NFKD leaves it as it is) and no possessive.
        # Nothing is cached: the words of a held-back note are never kept.
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", _POSSESSIVE.sub("", word.lower()))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@cache
def lexicon() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames), folded, from Faker's offline lists for `LOCALES`."""
    first: set[str] = set()
    last: set[str] = set()
    for locale in LOCALES:
        provider = import_module(f"faker.providers.person.{locale}").Provider
        for attr, into in (
            ("first_names", first),
            ("first_names_male", first),
            ("first_names_female", first),
            ("last_names", last),
        ):
            entries = vars(provider).get(attr, ())
            # A list, or a dict of name -> frequency; some locales derive one as a property.
            if isinstance(entries, (list, tuple, dict)):
                for entry in entries:
                    into.update(fold(w) for w in WORD.findall(entry))
    # Two-letter words ("Al", "Ed", "de") say too little to be taken for a name.
    first = {w for w in first if len(w) > 2}
    last = {w for w in last if len(w) > 2}
    return frozenset(first), frozenset(last)


def _is_cap(word: str) -> bool:
    return word[:1].isupper() and not word.isupper()


def _place_runs(words: list[str]) -> set[int]:
    """Indexes of capitalised words that are part of a place's name."""
    places: set[int] = set()
    i = 0
    while i < len(words):
        if not _is_cap(words[i]) and fold(words[i]) not in PLACE_BEFORE:
            i += 1
            continue
        j = i
        while j + 1 < len(words) and (_is_cap(words[j + 1]) or words[j + 1].isupper()):
            j += 1
        run = range(i, j + 1)
        before = i > 0 and fold(words[i - 1]) in PLACE_BEFORE
        starts = fold(words[i]) in PLACE_BEFORE
        after = j + 1 < len(words) and fold(words[j + 1]) in PLACE_AFTER
        ends = fold(words[j]) in PLACE_AFTER
        if before or starts or after or ends:
            places.update(run)
        i = j + 1
    return places


def has_name(text: str) -> bool:
    """Whether `text` names a person (a first name, or a surname with a person around it)."""
    first, last = lexicon()
    words = WORD.findall(text)
    places = _place_runs(words)
    for i, word in enumerate(words):
        if i in places or word.isupper():
            continue  # a place's name, or an acronym (ICE, CBP, HSI)
        key = fold(word)
        prev = fold(words[i - 1]) if i > 0 else ""
        nxt = words[i + 1] if i + 1 < len(words) else ""
        cued = prev in PERSON_CUES or fold(nxt) in FOLLOWING_CUES
        if key in first and key not in COMMON_WORDS:
            return True
        followed = bool(nxt) and _is_cap(nxt) and (fold(nxt) in last or fold(nxt) in first)
        if key in first and _is_cap(word) and (cued or followed):
            return True
        if key in last and (cued or prev in first) and (_is_cap(word) or prev in first):
            return True
    return False
