import random

from airflow_dbstream.core.dedup import new_flags
from airflow_dbstream.core.rows import Version


def may_be_new(epoch_us: int, digest: str, score: bytes | None, stored_digest: bytes | None) -> bool:
    """The rule of DESIGN.md for one row, written plainly: the yardstick of new_flags."""
    if score is None:
        return True
    epoch, last = float(epoch_us), float(score)
    return epoch > last or (epoch == last and stored_digest != digest.encode())


def test_new_flags_apply_the_dedup_rule_to_each_version():
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randrange(1, 40)
        versions = [Version(str(i), rng.choice([10, 11, 12]), rng.choice(["a", "b"])) for i in range(n)]
        # as precheck.lua returns them: scores as Redis writes them (text), None where not in seen
        none_rate = rng.choice([0, 0.3])
        scores = [
            None if rng.random() < none_rate else str(rng.choice([10, 11, 12])).encode() for _ in range(n)
        ]
        stored = [None if s is None else rng.choice([b"a", b"b", None]) for s in scores]
        expected = [
            may_be_new(v.epoch_us, v.digest, s, d) for v, s, d in zip(versions, scores, stored, strict=True)
        ]
        assert new_flags(versions, scores, stored) == expected
    # an unchanged window: nothing may be new; one digest changed at the same epoch, one epoch newer
    versions = [Version("1", 10, "a"), Version("2", 10, "b"), Version("3", 11, "c")]
    assert new_flags(versions, [b"10", b"10", b"10"], [b"a", b"x", b"c"]) == [False, True, True]
    assert new_flags(versions, [b"10", b"11", None], [b"a", b"b", None]) == [False, False, True]
