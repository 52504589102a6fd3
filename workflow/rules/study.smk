# A study's summary (seeds and sweeps): its table with 95 % intervals over seeds and a
# seed-spread figure, for `snakemake --report` (canids.workflow.study_report).


rule study:
    input:
        metrics=PIPELINE.evaluations(),
    output:
        table_md=LAYOUT.study("{study}", "table_md"),
        table_csv=report(
            LAYOUT.study("{study}", "table_csv"),
            category="Study",
            caption="../report/study_table.rst",
        ),
        table_tex=LAYOUT.study("{study}", "table_tex"),
        table_json=LAYOUT.study("{study}", "table_json"),
        seed_spread=report(
            LAYOUT.study("{study}", "seed_spread"),
            category="Study",
            caption="../report/study_spread.rst",
        ),
    log:
        LAYOUT.study_log("{study}"),
    localrule: True
    conda:
        "../envs/canids.yaml"
    params:
        expected=PIPELINE.expected_evaluations(),
        anchors=os.path.join(workflow.basedir, "..", "docs", "anchors.csv"),
    script:
        "../scripts/study.py"
