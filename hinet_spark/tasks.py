"""The two objectives of every scenario, spelled once: task names, label columns, score columns.

CTR is "clicked"; CTCVR is "clicked and then ordered" (the paper's two tasks). A leaf of the
layer rule: imports nothing.
"""

TASKS = ("ctr", "ctcvr")
LABELS = tuple(f"label_{t}" for t in TASKS)  # the samples' label columns, in task order
SCORES = tuple(f"p_{t}" for t in TASKS)  # the scores table's (and the model's output) columns, in task order
