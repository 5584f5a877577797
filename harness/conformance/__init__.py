"""tympan's conformance suite: the contracts every streaming voice agent should keep.

Run it with ``tympan run`` or ``pytest --pyargs harness.conformance --tympan-rig … --tympan-dut …``.
Modules run in order, cheapest detectors of each classic mistake first (so ``-x`` stops
early on a broken agent):

    test_01_streaming   long questions: clause chunking, streaming, back-pressure, stalls, EOU gate
    test_02_barge_in    barge-in at three offsets: stop, stale audio, cancel, answer, overlap
    test_03_questions   short questions: a reply to every one, within the TTFA budget
    test_04_pause_trap  a mid-sentence pause must not be taken for the end of the question
    test_05_budgets     percentiles over every turn against the budget file; turn-taking rates

Each test plays its turn through the ``turn`` fixture (a turn judged by several tests is
played once) and asserts one contract; failure messages start with the contract in brackets.
"""
