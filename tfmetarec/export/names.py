"""The names of the serving contract's inputs, outputs and state entries (no dependencies: the
contract, its rule table, the exporters and the clients all read them from here)."""

STATE_VERSION = 2
CONTRACT_FILE = "contract.json"

USER_ID = "user_id"
SUPPORT_ITEM = "support_item_id"
SUPPORT_RATING = "support_rating"
SUPPORT_MASK = "support_mask"
QUERY_ITEM = "query_item_id"
NEW_ITEM = "new_item_id"
NEW_RATING = "new_rating"
NEW_MASK = "new_mask"
STATE_PREFIX = "state_"
SCORES = "scores"
TOP_ITEMS = "item_id"
# Entries every state carries besides the learner's own tensors.
STATE_FINGERPRINT = "fingerprint"  # int64 [T]: which exported model made the state
STATE_FORMAT = "version"  # int32 [T]: STATE_VERSION
STATE_USER_ID = "user_index"  # int32 [T]: the user's ID vocabulary index
STATE_USER_FIELDS = "user_fields"  # int32 [T, W_user]: the user's field indices
STATE_RATED_ITEM = "rated_item"  # int32 [T, R]: the item table rows the user rated, most recent R
STATE_RATED_MASK = "rated_mask"  # float32 [T, R]: 1 where rated_item holds a rating
# The envelope: who the state belongs to and its integrity tag. Added and checked by the exported
# signatures and the ONNX client around the learner's own computation, never seen by it.
STATE_USER = "user"  # int64 [T]: the raw user ID the state was adapted for
STATE_TAG = "tag"  # int64 [T]: a keyed hash of every other entry, made with the export's secret key
ENVELOPE = (STATE_USER, STATE_TAG)



def bucket_name(signature: str, users: int, support: int | None) -> str:
    """A signature at one static bucket: ``adapt_and_score.t1.s32`` (``t`` users, ``s`` support
    rows; no ``s`` part for a signature that takes no ratings). The ONNX files and the
    SavedModel's static signatures are named so."""
    return f"{signature}.t{users}" + ("" if support is None else f".s{support}")


SIGNATURES = ("serving_default", "adapt_and_score", "adapt", "score_with_state", "recommend",
              "recommend_with_state", "update_state")
