"""MultiArith (180 problems): accuracy of the last integer, with GSM8K's prompt and check.

Example row (the authors' file): {"instruction": "Ann has 4 pens and buys 5 more. How many pens
does she have?", "output": "The answer is 9"}. On the Hub (ChilleD/MultiArith) the columns are
`question` and `final_ans`. The authors evaluate it with the gsm8k_infer template and the same
last-integer rule as GSM8K.
"""

from . import Data, Task, gsm8k, load_table


def load(data_dir: str | None, limit: int | None) -> Data:
    return load_table("multiarith", data_dir=data_dir, data_file="multiarith_test.json",
                      file_columns=("instruction", "output"), hub=("ChilleD/MultiArith", None, "test"),
                      hub_columns=("question", "final_ans"), limit=limit)


TASK = Task(name="multiarith", version=1, description="MultiArith, accuracy (last integer)", metric="accuracy",
            load=load, prompt=gsm8k.prompt, score=gsm8k.score, hub="ChilleD/MultiArith (test)", data_file="multiarith_test.json")
