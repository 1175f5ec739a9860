print("lnrr")
