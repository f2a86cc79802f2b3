"""SGLang adapter: LongCat-Flash built from SGLang's layers and longcat_common."""
